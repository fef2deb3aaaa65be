package cli

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// Exit codes of every verb.
const (
	exitOK    = 0
	exitFail  = 1
	exitUsage = 2
)

// env is what one run of a verb may touch. Main builds it from its arguments;
// tests build it with a short poll interval so they never sleep for long.
type env struct {
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer

	// httpClient talks to the Kiln endpoint (and nothing else).
	httpClient *http.Client
	// pollInterval paces `logs --follow` and deploy's wait for an update.
	pollInterval time.Duration
	// waitTimeout bounds deploy's wait for a function to become ready.
	waitTimeout time.Duration
	now         func() time.Time
}

// verb is one top-level command.
type verb struct {
	name    string
	summary string
	run     func(ctx context.Context, e *env, args []string) int
}

func verbs() []verb {
	return []verb{
		{"deploy", "create or update a function from a directory or .zip", runDeploy},
		{"invoke", "invoke a function and print its response", runInvoke},
		{"ls", "list functions", runLs},
		{"rm", "delete a function (or one version)", runRm},
		{"logs", "print a function's recent log lines", runLogs},
		{"queue", "manage Kiln queues (create, ls, rm, send, receive)", runQueue},
		{"stream", "manage Kiln streams (create, ls, describe, rm, put, read)", runStream},
		{"account", "manage accounts (account create)", runAccount},
		{"version", "print the kiln version", runVersion},
	}
}

// Main runs one client verb and returns the process exit code: 0 on success,
// 1 on failure, 2 on a usage error. args are the command-line arguments after
// the program name (os.Args[1:]); args[0] is the verb. ctx cancels any request
// in flight and ends `logs --follow`.
func Main(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	e := &env{
		stdin:        stdin,
		stdout:       stdout,
		stderr:       stderr,
		httpClient:   newEndpointHTTPClient(),
		pollInterval: time.Second,
		waitTimeout:  5 * time.Minute,
		now:          time.Now,
	}
	return e.main(ctx, args)
}

func (e *env) main(ctx context.Context, args []string) int {
	if len(args) == 0 {
		e.topUsage(e.stderr)
		return exitUsage
	}
	name := args[0]
	switch name {
	case "-h", "-help", "--help", "help":
		if name == "help" && len(args) > 1 {
			if args[1] == "server" {
				// The server is wired outside this package.
				fmt.Fprintln(e.stdout, "Run 'kiln server --help' for the server's flags.")
				return exitOK
			}
			// `kiln help VERB` is `kiln VERB --help`.
			return e.main(ctx, []string{args[1], "--help"})
		}
		e.topUsage(e.stdout)
		return exitOK
	case "-v", "--version":
		return runVersion(ctx, e, nil)
	}
	for _, v := range verbs() {
		if v.name == name {
			return v.run(ctx, e, args[1:])
		}
	}
	fmt.Fprintf(e.stderr, "kiln: unknown command %q\nRun 'kiln --help' for the list of commands.\n", name)
	return exitUsage
}

func (e *env) topUsage(w io.Writer) {
	var b strings.Builder
	b.WriteString("Usage: kiln COMMAND [ARGS] [FLAGS]\n\n")
	b.WriteString("Kiln runs AWS-Lambda-compatible functions. These commands talk to a Kiln\n")
	b.WriteString("server over its Lambda API; the AWS CLI and SDKs work too (--endpoint-url).\n\n")
	b.WriteString("Commands:\n")
	for _, v := range verbs() {
		fmt.Fprintf(&b, "  %-9s %s\n", v.name, v.summary)
	}
	fmt.Fprintf(&b, "  %-9s %s\n", "server", "run a Kiln server (see 'kiln server --help')")
	b.WriteString("\nCommon flags (every command):\n")
	b.WriteString(commonFlagsHelp(true))
	b.WriteString("\nRun 'kiln COMMAND --help' for a command's arguments and flags.\n")
	_, _ = io.WriteString(w, b.String())
}
