package cli

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
	"github.com/aws/smithy-go"
)

func TestDescribeError(t *testing.T) {
	dial := &url.Error{Op: "Get", URL: "http://127.0.0.1:9001/2015-03-31/functions?MaxItems=50",
		Err: &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}}
	tests := []struct {
		name string
		op   string
		err  error
		want string
	}{
		{
			name: "typed SDK error",
			op:   "ignored",
			err: &smithy.OperationError{ServiceID: "Lambda", OperationName: "GetFunction",
				Err: &types.ResourceNotFoundException{Message: aws.String("Function not found: arn:aws:lambda:us-east-1:1:function:x")}},
			want: "An error occurred (ResourceNotFoundException) when calling the GetFunction operation: Function not found: arn:aws:lambda:us-east-1:1:function:x",
		},
		{
			name: "generic API error named by the caller",
			op:   "GetFunctionLogs",
			err:  &smithy.GenericAPIError{Code: "AccessDeniedException", Message: "no"},
			want: "An error occurred (AccessDeniedException) when calling the GetFunctionLogs operation: no",
		},
		{
			name: "throttle keeps the message",
			op:   "Invoke",
			err: fmt.Errorf("wrapped: %w", &smithy.OperationError{OperationName: "Invoke",
				Err: &types.TooManyRequestsException{Message: aws.String("Rate exceeded"), Reason: types.ThrottleReasonConcurrentInvocationLimitExceeded}}),
			want: "An error occurred (TooManyRequestsException) when calling the Invoke operation: Rate exceeded",
		},
		{
			name: "empty message",
			op:   "CreateAccount",
			err:  &smithy.GenericAPIError{Code: "500"},
			want: "An error occurred (500) when calling the CreateAccount operation: Unknown",
		},
		{
			name: "connection refused",
			op:   "ListFunctions",
			err:  &smithy.OperationError{OperationName: "ListFunctions", Err: fmt.Errorf("send: %w", dial)},
			want: `Could not connect to the endpoint URL: "http://127.0.0.1:9001/2015-03-31/functions" (is a kiln server running there? see --endpoint-url)`,
		},
		{
			name: "interrupted",
			op:   "Invoke",
			err:  fmt.Errorf("x: %w", context.Canceled),
			want: "kiln: interrupted",
		},
		{
			name: "local failure",
			op:   "",
			err:  errors.New("code path: no such file"),
			want: "kiln: code path: no such file",
		},
		{
			name: "local failure with operation",
			op:   "CreateAccount",
			err:  errors.New("decode reply: bad"),
			want: "kiln: CreateAccount: decode reply: bad",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := describeError(tt.op, tt.err); got != tt.want {
				t.Errorf("describeError =\n%s\nwant\n%s", got, tt.want)
			}
		})
	}
}

func TestDecodeAPIError(t *testing.T) {
	tests := []struct {
		name      string
		status    int
		header    string
		body      string
		wantCode  string
		wantMsg   string
		wantFault smithy.ErrorFault
	}{
		{"header and lower message", 409, "ResourceConflictException", `{"Type":"User","message":"exists"}`, "ResourceConflictException", "exists", smithy.FaultClient},
		{"header and capital Message", 404, "ResourceNotFoundException", `{"Type":"User","Message":"Function not found: x"}`, "ResourceNotFoundException", "Function not found: x", smithy.FaultClient},
		{"header is sanitized", 403, "aws.protocols#AccessDeniedException:http://internal", `{"message":"no"}`, "AccessDeniedException", "no", smithy.FaultClient},
		{"code from body", 400, "", `{"code":"ValidationException","message":"bad"}`, "ValidationException", "bad", smithy.FaultClient},
		{"code from __type", 400, "", `{"__type":"com.amazon#InvalidParameterValueException","MESSAGE":"bad"}`, "InvalidParameterValueException", "bad", smithy.FaultClient},
		{"no code, not JSON", 502, "", `<html>bad gateway</html>`, "502", "Bad Gateway", smithy.FaultServer},
		{"no code, empty body", 404, "", ``, "404", "Not Found", smithy.FaultClient},
		{"message of wrong type", 500, "ServiceException", `{"Message":17}`, "ServiceException", "", smithy.FaultServer},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{}
			if tt.header != "" {
				h.Set("X-Amzn-ErrorType", tt.header)
			}
			e := decodeAPIError(tt.status, h, []byte(tt.body))
			if e.Code != tt.wantCode || e.Message != tt.wantMsg || e.Fault != tt.wantFault {
				t.Errorf("got %+v, want code %q message %q fault %v", e, tt.wantCode, tt.wantMsg, tt.wantFault)
			}
		})
	}
}

func TestCredentialsErrorText(t *testing.T) {
	endOfChain := fmt.Errorf("failed to refresh cached credentials: %w",
		&smithy.OperationError{ServiceID: "ec2imds", OperationName: "GetMetadata", Err: errors.New("access disabled")})
	e := &credentialsError{awsErr: endOfChain}
	if got := describeError("ListFunctions", e); got != e.Error() || containsAny(got, "ec2imds", "AWS credential chain") {
		t.Errorf("end of chain should not be shown:\n%s", got)
	}
	e = &credentialsError{awsErr: errors.New("profile sso: refused"), kilnErr: errors.New("no profile nope")}
	got := describeError("ListFunctions", e)
	for _, want := range []string{"Unable to locate credentials.", "AWS credential chain: profile sso: refused", ".kiln: no profile nope"} {
		if !containsAny(got, want) {
			t.Errorf("message lacks %q:\n%s", want, got)
		}
	}
}

func containsAny(s string, subs ...string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}
