// Package cli implements the client verbs of the one kiln binary: deploy,
// invoke, ls, rm, logs, account create and version. cmd/kiln calls Main for
// every verb except the server roles.
//
// It owns argument parsing, credential and region resolution (the AWS tools'
// chain, then ./.kiln as a fallback), and the rendering of results and
// AWS-CLI-style errors. It talks to a Kiln server only over HTTP: the Lambda
// REST API through aws-sdk-go-v2's lambda client, and Kiln's own routes under
// /2026-01-01/kiln/ signed with the SDK's SigV4 signer.
//
// It must never import a server-side package (controlplane, frontend,
// worker, workermgr, sandbox, runtimeapi, consensus, server); a test enforces
// this. It must never contact any host but the endpoint the user chose: the
// EC2 instance-metadata client is disabled, and every credential provider
// that would need the network (STS, SSO, container endpoints) gets an HTTP
// client that refuses to send anything.
package cli
