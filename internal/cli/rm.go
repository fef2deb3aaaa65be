package cli

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
)

const rmAbout = `Deletes function NAME with all its versions and aliases, or only the version
given with --qualifier.`

func newRmCommand() (*command, *string) {
	cmd := newCommand("rm", "rm NAME [flags]", rmAbout, 1, 1, true)
	qualifier := cmd.fs.String("qualifier", "", "delete only this `version`")
	return cmd, qualifier
}

func runRm(ctx context.Context, e *env, args []string) int {
	cmd, q := newRmCommand()
	pos, code, done := cmd.parse(e, args)
	if done {
		return code
	}
	c, code, ok := e.connect(ctx, cmd)
	if !ok {
		return code
	}
	in := &lambda.DeleteFunctionInput{FunctionName: aws.String(pos[0])}
	what, qualifier := pos[0], *q
	if qualifier != "" {
		in.Qualifier = aws.String(qualifier)
		what += ":" + qualifier
	}
	if _, err := c.lambda.DeleteFunction(ctx, in); err != nil {
		return e.fail("DeleteFunction", err)
	}
	fmt.Fprintf(e.stdout, "deleted %s\n", what)
	return exitOK
}
