// Package controlplane is Kiln's Lambda management plane: functions, their
// code, versions, aliases and accounts, served as the AWS Lambda REST API
// (2015-03-31) plus Kiln's own account route.
//
// State lives in a Part of the shared consensus node (hashicorp/raft): every
// change is a command that is on disk in the Raft log before the API answers,
// so what a user created survives a restart or SIGKILL. Zips are never put in
// Raft; they are written content-addressed to DataDir/code/<sha256hex>.zip
// (temp file, fsync, rename, fsync dir) before the command that references
// them is proposed, and removed once no version references them.
//
// It owns: request validation in AWS's words, the function/version/alias
// model, account ids and access keys, and the read paths the invoke hot path
// uses (Resolve, LookupKey), which read only the local in-memory replica.
//
// It must never: authenticate callers (the frontend's SigV4 check puts the
// account into the context), show one account anything of another (every
// lookup is keyed by the caller's account; a foreign ARN is simply not
// found), read the clock or randomness inside apply (the proposer stamps
// times and ids into the command), or write a reply or error except through
// package awsapi.
package controlplane
