// A Lambda function on aws-lambda-go that the worker and workermgr tests run
// as a provided runtime. Each action exercises one way an invoke can end.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-lambda-go/lambdacontext"
)

// instance is random per process, so a test can tell warm reuse (same
// process) from a new sandbox.
var instance = func() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}()

type event struct {
	Action string `json:"action"`
	Msg    string `json:"msg"`
	Ms     int    `json:"ms"`
	N      int    `json:"n"`
}

type reply struct {
	Instance  string `json:"instance"`
	Pid       int    `json:"pid"`
	Child     int    `json:"child,omitempty"`
	Msg       string `json:"msg,omitempty"`
	RequestID string `json:"request_id"`
}

// hold keeps allocations reachable so the collector cannot free them.
var hold [][]byte

func handle(ctx context.Context, e event) (reply, error) {
	lc, _ := lambdacontext.FromContext(ctx)
	r := reply{Instance: instance, Pid: os.Getpid(), Msg: e.Msg, RequestID: lc.AwsRequestID}
	switch e.Action {
	case "error":
		return reply{}, errors.New("boom: " + e.Msg)
	case "panic":
		panic("go panic: " + e.Msg)
	case "exit":
		fmt.Println("exiting with", e.N)
		os.Exit(e.N)
	case "sleep":
		fmt.Println("sleeping", e.Ms, "ms")
		time.Sleep(time.Duration(e.Ms) * time.Millisecond)
	case "log":
		for i := 0; i < e.N; i++ {
			fmt.Printf("%s line %d\n", e.Msg, i)
		}
	case "alloc":
		// Touch every page of N MiB so the memory is really charged.
		for i := 0; i < e.N; i++ {
			b := make([]byte, 1<<20)
			for j := 0; j < len(b); j += 4096 {
				b[j] = 1
			}
			hold = append(hold, b)
		}
	case "spawn":
		// A child in its own session: the sandbox must still kill it.
		self, err := os.Executable()
		if err != nil {
			return reply{}, err
		}
		cmd := exec.Command(self)
		cmd.Env = []string{"GOFN_CHILD=sleep"}
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		if err := cmd.Start(); err != nil {
			return reply{}, err
		}
		r.Child = cmd.Process.Pid
	}
	fmt.Println("gofn saw", e.Action, e.Msg)
	return r, nil
}

func main() {
	if os.Getenv("GOFN_CHILD") == "sleep" {
		time.Sleep(time.Hour)
		return
	}
	lambda.Start(handle)
}
