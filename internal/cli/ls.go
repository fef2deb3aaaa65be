package cli

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/lambda/types"
)

const lsAbout = `Lists every function of the account (all pages), one per line.`

func newLsCommand() *command {
	return newCommand("ls", "ls [flags]", lsAbout, 0, 0, true)
}

func runLs(ctx context.Context, e *env, args []string) int {
	cmd := newLsCommand()
	if _, code, done := cmd.parse(e, args); done {
		return code
	}
	c, code, ok := e.connect(ctx, cmd)
	if !ok {
		return code
	}
	var fns []types.FunctionConfiguration
	p := lambda.NewListFunctionsPaginator(c.lambda, &lambda.ListFunctionsInput{})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return e.fail("ListFunctions", err)
		}
		fns = append(fns, page.Functions...)
	}
	writeFunctionTable(e.stdout, fns)
	return exitOK
}

func writeFunctionTable(w io.Writer, fns []types.FunctionConfiguration) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tRUNTIME\tMEMORY\tTIMEOUT\tLAST MODIFIED")
	for _, f := range fns {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n",
			aws.ToString(f.FunctionName), orDash(string(f.Runtime)),
			unit(f.MemorySize, "MB"), unit(f.Timeout, "s"), orDash(aws.ToString(f.LastModified)))
	}
	_ = tw.Flush()
}

func unit(v *int32, u string) string {
	if v == nil {
		return "-"
	}
	return fmt.Sprintf("%d%s", *v, u)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
