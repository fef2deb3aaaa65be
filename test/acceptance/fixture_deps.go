//go:build fixtures

package acceptance

// The test functions under testdata/ are built by the tests with `go build`,
// inside this module; testdata is invisible to `go mod tidy`, so this file
// (never compiled: the tag is never set) keeps their dependency in go.mod.
import (
	_ "github.com/aws/aws-lambda-go/lambda"
	_ "github.com/aws/aws-lambda-go/lambdacontext"
)
