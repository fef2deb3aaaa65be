package cli

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
)

// maxPayload is the largest synchronous request payload Lambda accepts; a
// larger stdin is refused before anything is sent.
const maxPayload = 6 << 20

const invokeAbout = `Invokes function NAME with the JSON payload given as an argument, or read from
stdin when the argument is "-" (default {}), and prints the response payload to
stdout. If the function returns an error, prints its error payload and exits 1.`

type invokeFlags struct {
	qualifier string
	tail      bool
	event     bool
}

func newInvokeCommand() (*command, *invokeFlags) {
	cmd := newCommand("invoke", "invoke NAME [JSON|-] [flags]", invokeAbout, 1, 2, true)
	f := &invokeFlags{}
	cmd.fs.StringVar(&f.qualifier, "qualifier", "", "version or alias to invoke (`qualifier`)")
	cmd.fs.BoolVar(&f.tail, "tail", false, "print the end of the invocation's log (X-Amz-Log-Result) to stderr")
	cmd.fs.BoolVar(&f.event, "event", false, "invoke asynchronously (InvocationType Event); prints nothing on success")
	return cmd, f
}

func runInvoke(ctx context.Context, e *env, args []string) int {
	cmd, f := newInvokeCommand()
	pos, code, done := cmd.parse(e, args)
	if done {
		return code
	}
	if f.tail && f.event {
		return cmd.usageError(e, "--tail works only for synchronous invokes, not with --event")
	}
	arg, hasArg := "", len(pos) > 1
	if hasArg {
		arg = pos[1]
	}
	payload, err := readPayload(arg, hasArg, e.stdin)
	if err != nil {
		return e.fail("", err)
	}
	c, code, ok := e.connect(ctx, cmd)
	if !ok {
		return code
	}
	in := &lambda.InvokeInput{
		FunctionName: aws.String(pos[0]),
		Payload:      payload,
	}
	if f.qualifier != "" {
		in.Qualifier = aws.String(f.qualifier)
	}
	if f.event {
		in.InvocationType = types.InvocationTypeEvent
	}
	if f.tail {
		in.LogType = types.LogTypeTail
	}
	out, err := c.lambda.Invoke(ctx, in)
	if err != nil {
		return e.fail("Invoke", err)
	}
	return e.printInvokeResult(out)
}

// readPayload returns the payload to send: the argument itself, stdin when
// the argument is "-", and {} without an argument. The bytes go to the server
// unchanged; it, not the client, judges whether they are JSON.
func readPayload(arg string, hasArg bool, stdin io.Reader) ([]byte, error) {
	switch {
	case !hasArg:
		return []byte("{}"), nil
	case arg != "-":
		return []byte(arg), nil
	case stdin == nil:
		return nil, fmt.Errorf("payload %q: no stdin", arg)
	}
	b, err := io.ReadAll(io.LimitReader(stdin, maxPayload+1))
	if err != nil {
		return nil, fmt.Errorf("read payload from stdin: %w", err)
	}
	if len(b) > maxPayload {
		return nil, fmt.Errorf("payload from stdin is larger than %d bytes, Lambda's limit", maxPayload)
	}
	return b, nil
}

func (e *env) printInvokeResult(out *lambda.InvokeOutput) int {
	if out.LogResult != nil {
		if tail, err := base64.StdEncoding.DecodeString(*out.LogResult); err == nil {
			writeLine(e.stderr, string(tail))
		} else {
			fmt.Fprintf(e.stderr, "kiln: X-Amz-Log-Result is not base64: %v\n", err)
		}
	}
	if len(out.Payload) > 0 {
		writeLine(e.stdout, string(out.Payload))
	}
	if out.FunctionError != nil {
		fmt.Fprintf(e.stderr, "kiln: the function returned an error (%s)\n", aws.ToString(out.FunctionError))
		return exitFail
	}
	return exitOK
}

// writeLine writes s and a newline unless s already ends with one, so the
// shell prompt starts on a fresh line.
func writeLine(w io.Writer, s string) {
	if s != "" && s[len(s)-1] != '\n' {
		s += "\n"
	}
	_, _ = io.WriteString(w, s)
}
