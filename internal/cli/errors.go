package cli

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"

	"github.com/aws/smithy-go"
)

// fail prints err for the user and returns exitFail. op names the operation
// when err does not carry one.
func (e *env) fail(op string, err error) int {
	fmt.Fprintln(e.stderr, describeError(op, err))
	return exitFail
}

// describeError renders err as the AWS CLI does for service errors
// ("An error occurred (Code) when calling the Op operation: message") and in
// plain words for the failures a user can fix locally.
func describeError(op string, err error) string {
	var ce *credentialsError
	if errors.As(err, &ce) {
		return ce.Error()
	}
	var ae smithy.APIError
	if errors.As(err, &ae) {
		name := op
		var oe *smithy.OperationError
		if errors.As(err, &oe) && oe.OperationName != "" {
			name = oe.OperationName
		}
		msg := ae.ErrorMessage()
		if msg == "" {
			msg = "Unknown"
		}
		return fmt.Sprintf("An error occurred (%s) when calling the %s operation: %s", ae.ErrorCode(), name, msg)
	}
	if errors.Is(err, context.Canceled) {
		return "kiln: interrupted"
	}
	var ue *url.Error
	var ne *net.OpError
	if errors.As(err, &ue) && errors.As(err, &ne) && ne.Op == "dial" {
		u := ue.URL
		if p, perr := url.Parse(u); perr == nil {
			p.RawQuery = ""
			u = p.Redacted()
		}
		return fmt.Sprintf("Could not connect to the endpoint URL: %q (is a kiln server running there? see --endpoint-url)", u)
	}
	if op != "" {
		return fmt.Sprintf("kiln: %s: %v", op, err)
	}
	return fmt.Sprintf("kiln: %v", err)
}
