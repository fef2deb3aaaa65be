// Package acceptance drives a real `kiln server` process over HTTP with the
// clients Lambda users have: aws-sdk-go-v2's lambda client and the AWS CLI.
// Nothing in these tests is faked: the server is the kiln binary built from
// this tree, the functions are real Go, Python and Node.js code.
package acceptance
