package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/aws/smithy-go"
)

const logsAbout = `Prints the latest log lines of function NAME, oldest first. With --follow,
keeps polling every second and prints new lines until interrupted.`

const (
	defaultLogLimit = 100
	maxLogLimit     = 10000
)

// logEvent is one entry of Kiln's logs route.
type logEvent struct {
	Timestamp int64 // epoch milliseconds
	Message   string
}

type logsFlags struct {
	limit  int
	follow bool
}

func newLogsCommand() (*command, *logsFlags) {
	cmd := newCommand("logs", "logs NAME [flags]", logsAbout, 1, 1, true)
	f := &logsFlags{}
	cmd.fs.IntVar(&f.limit, "limit", defaultLogLimit, "how many of the latest lines to fetch per request (`N`, 1-10000)")
	cmd.fs.BoolVar(&f.follow, "follow", false, "keep printing new lines as they arrive")
	return cmd, f
}

func runLogs(ctx context.Context, e *env, args []string) int {
	cmd, f := newLogsCommand()
	pos, code, done := cmd.parse(e, args)
	if done {
		return code
	}
	limit, follow := f.limit, f.follow
	if limit < 1 || limit > maxLogLimit {
		return cmd.usageError(e, "--limit must be between 1 and %d", maxLogLimit)
	}
	c, code, ok := e.connect(ctx, cmd)
	if !ok {
		return code
	}
	name := pos[0]
	p := &logPrinter{w: e.stdout}
	events, err := c.functionLogs(ctx, name, limit)
	if err != nil {
		return e.fail("GetFunctionLogs", err)
	}
	p.print(events)
	if !follow {
		return exitOK
	}
	tick := time.NewTicker(e.pollInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return exitOK
		case <-tick.C:
		}
		events, err := c.functionLogs(ctx, name, limit)
		switch {
		case ctx.Err() != nil:
			return exitOK
		case err != nil && isAPIError(err):
			return e.fail("GetFunctionLogs", err)
		case err != nil:
			// The server may be restarting; keep following.
			fmt.Fprintf(e.stderr, "%s (retrying)\n", describeError("GetFunctionLogs", err))
			continue
		}
		p.print(events)
	}
}

func isAPIError(err error) bool {
	var ae smithy.APIError
	return errors.As(err, &ae)
}

func (c *client) functionLogs(ctx context.Context, name string, limit int) ([]logEvent, error) {
	q := url.Values{"Limit": {strconv.Itoa(limit)}}
	b, err := c.kilnRequest(ctx, "GetFunctionLogs", http.MethodGet,
		[]string{"2026-01-01", "kiln", "functions", name, "logs"}, q, nil)
	if err != nil {
		return nil, err
	}
	events, err := parseLogEvents(b)
	if err != nil {
		return nil, &smithy.OperationError{ServiceID: "Lambda", OperationName: "GetFunctionLogs", Err: err}
	}
	return events, nil
}

// parseLogEvents decodes {"Events":[{"Timestamp":<epoch ms>,"Message":"..."}]}.
func parseLogEvents(b []byte) ([]logEvent, error) {
	var r struct {
		Events []struct {
			Timestamp json.Number
			Message   string
		}
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("decode logs reply: %w", err)
	}
	events := make([]logEvent, 0, len(r.Events))
	for _, ev := range r.Events {
		var ts int64
		if ev.Timestamp != "" {
			n, err := ev.Timestamp.Int64()
			if err != nil {
				f, ferr := ev.Timestamp.Float64()
				if ferr != nil {
					return nil, fmt.Errorf("decode logs reply: Timestamp %q: %w", ev.Timestamp, err)
				}
				n = int64(f)
			}
			ts = n
		}
		events = append(events, logEvent{Timestamp: ts, Message: ev.Message})
	}
	return events, nil
}

// logPrinter prints each event once across polls. Every poll returns the
// latest window of events, so an event is new when the current window holds
// more copies of its (timestamp, message) than the previous one did.
type logPrinter struct {
	w    io.Writer
	prev map[string]int
}

func (p *logPrinter) print(events []logEvent) {
	cur := make(map[string]int, len(events))
	var b strings.Builder
	for _, ev := range events {
		key := strconv.FormatInt(ev.Timestamp, 10) + "\x00" + ev.Message
		cur[key]++
		if cur[key] <= p.prev[key] {
			continue
		}
		msg := strings.TrimSuffix(ev.Message, "\n")
		msg = strings.TrimSuffix(msg, "\r")
		b.WriteString(msg)
		b.WriteByte('\n')
	}
	p.prev = cur
	_, _ = io.WriteString(p.w, b.String())
}
