package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"text/tabwriter"

	"github.com/aws/smithy-go"
)

const queueUsage = `Usage: kiln queue SUBCOMMAND [flags]

Kiln queues are durable queues addressed by SQS-shaped ARNs
(arn:aws:sqs:REGION:ACCOUNT:NAME); use them as async destinations.

Subcommands:
  create NAME          create a queue and print its ARN
  ls                   list queues with their message counts
  rm NAME              delete a queue and its messages
  send NAME [BODY]     send one message (BODY, or stdin when omitted)
  receive NAME         receive (and delete) messages, one body per line
`

var queueVerbs = map[string]func(ctx context.Context, e *env, args []string) int{
	"create":  runQueueCreate,
	"ls":      runQueueLs,
	"rm":      runQueueRm,
	"send":    runQueueSend,
	"receive": runQueueReceive,
}

func runQueue(ctx context.Context, e *env, args []string) int {
	return runSubcommand(ctx, e, "queue", queueUsage, queueVerbs, args)
}

func queueSegs(extra ...string) []string {
	return append([]string{"2026-01-01", "kiln", "queues"}, extra...)
}

type queueInfo struct {
	QueueName string
	QueueArn  string
	Messages  uint64 `json:"ApproximateNumberOfMessages"`
}

func runQueueCreate(ctx context.Context, e *env, args []string) int {
	cmd := newCommand("queue create", "queue create NAME [flags]", "Creates a queue (no-op if it exists) and prints its ARN.", 1, 1, true)
	pos, code, done := cmd.parse(e, args)
	if done {
		return code
	}
	c, code, ok := e.connect(ctx, cmd)
	if !ok {
		return code
	}
	body, _ := json.Marshal(struct{ QueueName string }{pos[0]})
	var q queueInfo
	if err := c.kilnCall(ctx, "CreateQueue", http.MethodPost, queueSegs(), nil, body, &q); err != nil {
		return e.fail("CreateQueue", err)
	}
	fmt.Fprintln(e.stdout, q.QueueArn)
	return exitOK
}

func runQueueLs(ctx context.Context, e *env, args []string) int {
	cmd := newCommand("queue ls", "queue ls [flags]", "Lists queues with their approximate message counts.", 0, 0, true)
	if _, code, done := cmd.parse(e, args); done {
		return code
	}
	c, code, ok := e.connect(ctx, cmd)
	if !ok {
		return code
	}
	var out struct{ Queues []queueInfo }
	if err := c.kilnCall(ctx, "ListQueues", http.MethodGet, queueSegs(), nil, nil, &out); err != nil {
		return e.fail("ListQueues", err)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tMESSAGES\tARN")
	for _, q := range out.Queues {
		fmt.Fprintf(tw, "%s\t%d\t%s\n", q.QueueName, q.Messages, q.QueueArn)
	}
	_ = tw.Flush()
	return exitOK
}

func runQueueRm(ctx context.Context, e *env, args []string) int {
	cmd := newCommand("queue rm", "queue rm NAME [flags]", "Deletes a queue and its messages.", 1, 1, true)
	pos, code, done := cmd.parse(e, args)
	if done {
		return code
	}
	c, code, ok := e.connect(ctx, cmd)
	if !ok {
		return code
	}
	if _, err := c.kilnRequest(ctx, "DeleteQueue", http.MethodDelete, queueSegs(pos[0]), nil, nil); err != nil {
		return e.fail("DeleteQueue", err)
	}
	return exitOK
}

func runQueueSend(ctx context.Context, e *env, args []string) int {
	cmd := newCommand("queue send", "queue send NAME [BODY] [flags]", "Sends one message: BODY, or all of stdin when BODY is omitted.", 1, 2, true)
	pos, code, done := cmd.parse(e, args)
	if done {
		return code
	}
	var body []byte
	if len(pos) == 2 {
		body = []byte(pos[1])
	} else {
		b, err := io.ReadAll(io.LimitReader(e.stdin, 256*1024+1))
		if err != nil {
			return e.fail("", err)
		}
		body = b
	}
	c, code, ok := e.connect(ctx, cmd)
	if !ok {
		return code
	}
	var out struct{ MessageId string }
	if err := c.kilnCall(ctx, "SendMessage", http.MethodPost, queueSegs(pos[0], "messages"), nil, body, &out); err != nil {
		return e.fail("SendMessage", err)
	}
	fmt.Fprintln(e.stdout, out.MessageId)
	return exitOK
}

func runQueueReceive(ctx context.Context, e *env, args []string) int {
	cmd := newCommand("queue receive", "queue receive NAME [flags]",
		"Receives up to --max messages, waiting up to --wait seconds for the first, and\ndeletes them; prints one message body per line.", 1, 1, true)
	max := cmd.fs.Int("max", 10, "most messages to receive (`N`, 1-10000)")
	wait := cmd.fs.Int("wait", 0, "seconds to wait for a first message (0-20)")
	pos, code, done := cmd.parse(e, args)
	if done {
		return code
	}
	if *max < 1 || *max > 10000 {
		return cmd.usageError(e, "--max must be between 1 and 10000")
	}
	if *wait < 0 || *wait > 20 {
		return cmd.usageError(e, "--wait must be between 0 and 20")
	}
	c, code, ok := e.connect(ctx, cmd)
	if !ok {
		return code
	}
	q := url.Values{"MaxNumberOfMessages": {strconv.Itoa(*max)}, "WaitTimeSeconds": {strconv.Itoa(*wait)}}
	var out struct{ Messages []struct{ Body string } }
	if err := c.kilnCall(ctx, "ReceiveMessage", http.MethodGet, queueSegs(pos[0], "messages"), q, nil, &out); err != nil {
		return e.fail("ReceiveMessage", err)
	}
	for _, m := range out.Messages {
		fmt.Fprintln(e.stdout, m.Body)
	}
	return exitOK
}

func decodeErr(op string, err error) error {
	return &smithy.OperationError{ServiceID: "Lambda", OperationName: op, Err: fmt.Errorf("decode reply: %w", err)}
}

// runSubcommand dispatches `kiln NOUN VERB …` to verbs, printing usage for
// --help and a usage error for a missing or unknown verb.
func runSubcommand(ctx context.Context, e *env, noun, usage string, verbs map[string]func(context.Context, *env, []string) int, args []string) int {
	if len(args) > 0 {
		if f := verbs[args[0]]; f != nil {
			return f(ctx, e, args[1:])
		}
		if args[0] == "--help" || args[0] == "-h" || args[0] == "-help" {
			fmt.Fprint(e.stdout, usage)
			return exitOK
		}
	}
	fmt.Fprintf(e.stderr, "kiln %s: missing or unknown subcommand\n%s", noun, usage)
	return exitUsage
}
