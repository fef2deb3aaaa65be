package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/kiln-dev/kiln/internal/runtimeapi"
	"github.com/kiln-dev/kiln/internal/runtimes"
	"github.com/kiln-dev/kiln/internal/sandbox"
)

// tailLimit is how much log Lambda returns with X-Amz-Log-Type: Tail.
const tailLimit = 4096

// initFailure is an init that went wrong, reported on the first invoke.
type initFailure struct {
	raw       []byte // the runtime's own error JSON (from /runtime/init/error)
	errorType string
	message   string // used when raw is empty: "RequestId: <id> Error: <message>"
}

func (f *initFailure) payload(requestID string) []byte {
	if len(f.raw) > 0 {
		return f.raw
	}
	return errorJSON(requestID, f.message, f.errorType)
}

func errorJSON(requestID, message, errorType string) []byte {
	b, _ := json.Marshal(struct {
		ErrorMessage string `json:"errorMessage"`
		ErrorType    string `json:"errorType"`
	}{"RequestId: " + requestID + " Error: " + message, errorType})
	return b
}

// sbx is one sandbox on this worker with its Runtime API server.
type sbx struct {
	id       string
	spec     FunctionSpec
	w        *Worker
	memoryMB int

	box    sandbox.Sandbox
	api    *runtimeapi.Server
	logs   *logPipe
	alive  context.Context // cancelled when the runtime process exits
	cancel context.CancelFunc

	initDuration time.Duration
	initFail     *initFailure
	invoked      bool // the first invoke reports Init Duration

	destroyOnce sync.Once
}

func (s *sbx) start(ctx context.Context, rt runtimes.Runtime, taskRoot string) error {
	w := s.w
	t0 := time.Now()
	// Isolated sandboxes see their code, runtime files and Runtime API at
	// Lambda's fixed places (isolation.go).
	iso := w.isolated()
	envTask, envRuntime, apiAddr := taskRoot, w.runtimeDir, sandboxRuntimeAPI
	if iso {
		envTask, envRuntime = sandboxTaskRoot, sandboxRuntimeDir
	}
	s.api = runtimeapi.NewServer(runtimeapi.Config{
		FunctionName:    s.spec.FunctionName,
		FunctionVersion: s.spec.FunctionVersion,
		Handler:         s.spec.Handler,
		Logger:          w.log,
	})
	serve := func(l net.Listener) {
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			_ = s.api.Serve(l)
		}()
	}
	if !iso {
		l, err := listenLoopback()
		if err != nil {
			return fmt.Errorf("worker: runtime api listener: %w", err)
		}
		apiAddr = l.Addr().String()
		serve(l)
	}
	var err error

	s.logs, err = newLogPipe(s.spec.AccountID, s.spec.FunctionName, w.cfg.Logs)
	if err != nil {
		return err
	}
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		s.logs.run()
	}()

	var argv []string
	if iso {
		argv, err = isolatedCommand(rt, taskRoot)
	} else {
		argv, err = rt.Command(taskRoot, w.runtimeDir)
	}
	if err != nil {
		// A provided runtime without a bootstrap: Lambda reports it on invoke.
		s.initFail = &initFailure{errorType: "Runtime.InvalidEntrypoint", message: err.Error()}
		s.alive, s.cancel = context.WithCancel(context.Background())
		s.cancel()
		return nil
	}
	initType := "on-demand"
	if s.spec.Provisioned {
		initType = "provisioned-concurrency"
	}
	now := w.cfg.Now().UTC()
	env := runtimes.Environment(runtimes.EnvParams{
		Runtime:         rt,
		FunctionName:    s.spec.FunctionName,
		FunctionVersion: s.spec.FunctionVersion,
		Handler:         s.spec.Handler,
		Region:          w.cfg.Region,
		MemoryMB:        s.spec.MemoryMB,
		RuntimeAPI:      apiAddr,
		TaskRoot:        envTask,
		RuntimeDir:      envRuntime,
		LogGroup:        "/aws/lambda/" + s.spec.FunctionName,
		LogStream:       now.Format("2006/01/02") + "/[" + s.spec.FunctionVersion + "]" + s.id,
		InitType:        initType,
		User:            s.spec.Env,
	})
	eph := s.spec.EphemeralMB
	if eph == 0 {
		eph = 512
	}
	tmpDir := filepath.Join(w.scratchDir, s.id)
	var mounts []sandbox.Mount
	if iso {
		tmpDir, mounts = "", w.isolatedMounts(taskRoot)
	}
	tCreate := time.Now()
	s.box, err = w.cfg.Backend.Create(ctx, sandbox.Spec{
		ID:           s.id,
		Argv:         argv,
		Env:          env,
		Dir:          envTask,
		Mounts:       mounts,
		TmpBytes:     int64(eph) << 20,
		MemoryBytes:  int64(s.spec.MemoryMB) << 20,
		CPUWeightMB:  s.spec.MemoryMB,
		PidsMax:      1024,
		InitCPUBoost: true,
		TmpDir:       tmpDir,
		Stdout:       s.logs.writer,
		Stderr:       s.logs.writer,
	})
	if err != nil {
		return fmt.Errorf("worker: create sandbox: %w", err)
	}
	if iso {
		l, err := listenInside(ctx, s.box)
		if err != nil {
			return err
		}
		serve(l)
	}
	if err := s.box.Start(ctx); err != nil {
		return fmt.Errorf("worker: start sandbox: %w", err)
	}
	started := time.Now()
	// The parent no longer needs the pipe's write end; keeping it would hide EOF.
	s.logs.closeWriter()

	s.alive, s.cancel = context.WithCancel(context.Background())
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		<-s.box.Done()
		s.cancel()
	}()

	ictx, cancel := context.WithTimeout(s.alive, w.cfg.InitTimeout)
	defer cancel()
	err = s.api.WaitInit(ictx)
	tInit := time.Now()
	// Init ran with the CPU boost; invokes run under the memory-proportional cap.
	if b, ok := s.box.(sandbox.InitBooster); ok {
		if cerr := b.EndInit(ctx); cerr != nil {
			return cerr
		}
	}
	if err == nil {
		w.recordColdStart(s.id, s.box, coldTimes{prep: tCreate.Sub(t0), runtimeInit: tInit.Sub(started), endInit: time.Since(tInit)})
	}
	var ie *runtimeapi.InitError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ie):
		s.initFail = &initFailure{raw: ie.Payload, errorType: ie.ErrorType}
		if len(ie.Payload) == 0 {
			s.initFail.message = "Runtime failed during init"
		}
	case s.alive.Err() != nil:
		st, _ := s.box.Wait(context.WithoutCancel(ctx))
		s.initFail = exitFailure(st)
	case ctx.Err() != nil:
		return ctx.Err()
	default:
		s.initFail = &initFailure{errorType: "Sandbox.Timedout",
			message: fmt.Sprintf("Task timed out after %.2f seconds", w.cfg.InitTimeout.Seconds())}
	}
	s.logs.emit(fmt.Sprintf("INIT_REPORT Init Duration: %.2f ms\tPhase: init\tStatus: error\tError Type: %s",
		ms(w.cfg.Now().Sub(now)), s.initFail.errorType))
	return nil
}

func exitFailure(st sandbox.ExitStatus) *initFailure {
	if st.Code == 0 && st.Signal == 0 && !st.OOMKilled {
		return &initFailure{errorType: "Runtime.ExitError", message: "Runtime exited without providing a reason"}
	}
	return &initFailure{errorType: "Runtime.ExitError", message: "Runtime exited with error: " + st.String()}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// invoke runs one invocation. Every failure of the function or its runtime
// is a response (Lambda reports them as function errors); the only error is
// ErrSandboxGone, when the runtime died before it took the event, so the
// caller can run it in another sandbox.
func (s *sbx) invoke(ctx context.Context, req *InvokeRequest) (*InvokeResponse, error) {
	w := s.w
	if s.initFail == nil && s.alive.Err() != nil {
		return nil, ErrSandboxGone
	}
	start := w.cfg.Now()
	first := !s.invoked
	s.invoked = true
	s.logs.beginInvocation()
	s.logs.emit("START RequestId: " + req.RequestID + " Version: " + s.spec.FunctionVersion)

	resp := &InvokeResponse{}
	var status string
	if s.initFail != nil {
		resp.Payload = s.initFail.payload(req.RequestID)
		resp.FunctionError = "Unhandled"
		resp.ErrorType = s.initFail.errorType
		resp.Retire = true
		status = "error"
	} else {
		deadline := start.Add(time.Duration(s.spec.TimeoutSec) * time.Second)
		ictx, cancel := context.WithDeadline(s.alive, deadline)
		res, err := s.api.Invoke(ictx, &runtimeapi.Invocation{
			RequestID:          req.RequestID,
			Payload:            req.Payload,
			ContentType:        req.ContentType,
			Deadline:           deadline,
			InvokedFunctionArn: req.InvokedArn,
			TraceID:            req.TraceID,
			ClientContext:      req.ClientContext,
		})
		cancel()
		switch {
		case err == nil:
			resp.Payload = res.Payload
			resp.ContentType = res.ContentType
			if res.FunctionError {
				resp.FunctionError = "Unhandled"
				resp.ErrorType = res.ErrorType
			}
		case errors.Is(err, runtimeapi.ErrNotDelivered) && s.alive.Err() != nil:
			// The runtime exited after its previous invoke (aws-lambda-go does
			// after a panic) and never saw this event.
			s.logs.endInvocation()
			return nil, ErrSandboxGone
		case s.alive.Err() != nil:
			st, _ := s.box.Wait(context.WithoutCancel(ctx))
			f := exitFailure(st)
			resp.Payload = f.payload(req.RequestID)
			resp.FunctionError = "Unhandled"
			resp.ErrorType = f.errorType
			if st.OOMKilled {
				resp.ErrorType = "Runtime.OutOfMemory"
			}
			resp.Retire = true
			status = "error"
		default:
			// Timeout (or the worker is shutting down): the sandbox is killed
			// and reported as Lambda does.
			secs := fmt.Sprintf("%.2f", float64(s.spec.TimeoutSec))
			_ = s.box.Stop(context.WithoutCancel(ctx))
			s.logs.emit(w.cfg.Now().UTC().Format("2006-01-02T15:04:05.000Z") + " " + req.RequestID + " Task timed out after " + secs + " seconds")
			resp.Payload = errorJSON(req.RequestID, "Task timed out after "+secs+" seconds", "Sandbox.Timedout")
			resp.FunctionError = "Unhandled"
			resp.ErrorType = "Sandbox.Timedout"
			resp.Retire = true
			status = "timeout"
		}
	}
	resp.Duration = w.cfg.Now().Sub(start)
	s.logs.drain()

	s.logs.emit("END RequestId: " + req.RequestID)
	s.logs.emit(s.report(req.RequestID, resp.Duration, first, status, resp.ErrorType))
	if req.Tail {
		resp.LogTail = s.logs.invocationTail(tailLimit)
	}
	s.logs.endInvocation()
	return resp, nil
}

func (s *sbx) report(requestID string, d time.Duration, first bool, status, errorType string) string {
	var maxUsed uint64
	if p, ok := s.box.(sandbox.PeakMemoryReader); ok {
		maxUsed, _ = p.PeakMemory(context.Background())
	} else if s.box != nil {
		if st, err := s.box.Stats(context.Background()); err == nil {
			maxUsed = st.MaxMemoryBytes
		}
	}
	b := make([]byte, 0, 200)
	b = append(b, "REPORT RequestId: "...)
	b = append(b, requestID...)
	b = append(b, "\tDuration: "...)
	b = strconv.AppendFloat(b, ms(d), 'f', 2, 64)
	b = append(b, " ms\tBilled Duration: "...)
	b = strconv.AppendInt(b, int64(math.Ceil(ms(d))), 10)
	b = append(b, " ms\tMemory Size: "...)
	b = strconv.AppendInt(b, int64(s.spec.MemoryMB), 10)
	b = append(b, " MB\tMax Memory Used: "...)
	b = strconv.AppendUint(b, (maxUsed+(1<<20)-1)>>20, 10)
	b = append(b, " MB\t"...)
	if first && s.initDuration > 0 {
		b = append(b, "Init Duration: "...)
		b = strconv.AppendFloat(b, ms(s.initDuration), 'f', 2, 64)
		b = append(b, " ms\t"...)
	}
	if status != "" {
		b = append(b, "Status: "...)
		b = append(b, status...)
		b = append(b, '\t')
		if errorType != "" && status == "error" {
			b = append(b, "Error Type: "...)
			b = append(b, errorType...)
			b = append(b, '\t')
		}
	}
	return string(b)
}

// destroy kills the runtime and everything it started and releases the
// sandbox's resources. Safe to call more than once.
func (s *sbx) destroy(ctx context.Context) {
	s.destroyOnce.Do(func() {
		if s.box != nil {
			if err := s.box.Delete(ctx); err != nil {
				s.w.log.Warn("delete sandbox", "sandbox", s.id, "err", err)
			}
		}
		if s.cancel != nil {
			s.cancel()
		}
		if s.api != nil {
			_ = s.api.Close()
		}
		if s.logs != nil {
			s.logs.close()
		}
		_ = os.RemoveAll(filepath.Join(s.w.scratchDir, s.id))
	})
}
