package controlplane

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"runtime"
	"sort"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/kiln-dev/kiln/internal/consensus"
	"github.com/kiln-dev/kiln/internal/errdefs"
)

// PartName is the name the control plane's state has in the shared Raft log.
const PartName = "controlplane"

const stateActive = "Active"

// Config wires a Service.
type Config struct {
	DataDir string // code lives in DataDir/code
	Region  string // "" → us-east-1
	Node    *consensus.Node
	Logger  *slog.Logger
	Now     func() time.Time // nil → time.Now
	Rand    io.Reader        // ids and keys; nil → crypto/rand
}

// Version is the immutable runtime-relevant configuration of one function
// version ($LATEST counts too, told apart by RevisionId). Values handed out
// are shared and must not be modified, including Environment.
type Version struct {
	AccountID, FunctionName string
	FunctionArn             string // unqualified
	Version                 string // "$LATEST" or "N"
	Runtime, Handler        string
	MemorySize, Timeout     int
	Environment             map[string]string
	EphemeralStorage        int
	CodeSha256              string // base64
	CodeSha256Hex           string
	CodeSize                int64
	RevisionId              string
	State                   string

	key string
}

// Key is unique per (account, function, version, revision): sandboxes are
// keyed by it and never reused across keys.
func (v *Version) Key() string {
	if v.key != "" {
		return v.key
	}
	return v.computeKey()
}

func (v *Version) computeKey() string {
	return v.AccountID + "/" + v.FunctionName + "/" + v.Version + "/" + v.RevisionId
}

// Resolved is an invoke target mapped to a version.
type Resolved struct {
	Version         *Version
	ExecutedVersion string // "$LATEST" or "N"
	InvokedArn      string // as invoked, qualifier included
}

// Account is a tenant with its one access key.
type Account struct {
	ID, AccessKeyID, SecretAccessKey string
	Admin                            bool
}

// Service is the Lambda management plane.
type Service struct {
	log      *slog.Logger
	region   string
	node     *consensus.Node
	now      func() time.Time
	rand     *lockedReader
	code     *codeStore
	hostArch string

	mu sync.RWMutex
	st *state

	retireMu sync.Mutex
	onRetire []func(key string)

	handler http.Handler
	routes  map[routeKey]routeEntry
	conc    Concurrency       // counting's limits (concurrency.go); nil until set
	prov    Provisioning      // provisioned concurrency (provisioned.go); nil until set
	eic     *eventInvokeStore // FunctionEventInvokeConfig (eventinvoke.go)
	esm     *esmStore         // event-source mappings (esm.go)
	metrics metricsRegistry   // operator metrics (metrics.go)
}

// New builds the service and registers its state on cfg.Node, which must
// not be started yet.
func New(cfg Config) (*Service, error) {
	if cfg.Node == nil {
		return nil, errors.New("controlplane: Config.Node is required")
	}
	if cfg.DataDir == "" {
		return nil, errors.New("controlplane: Config.DataDir is required")
	}
	s := &Service{
		log:      cfg.Logger,
		region:   cfg.Region,
		node:     cfg.Node,
		now:      cfg.Now,
		rand:     &lockedReader{r: cfg.Rand},
		st:       newState(),
		hostArch: hostArchitecture(),
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.log = s.log.With("component", "controlplane")
	if s.region == "" {
		s.region = "us-east-1"
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.rand.r == nil {
		s.rand.r = rand.Reader
	}
	var err error
	if s.code, err = newCodeStore(cfg.DataDir); err != nil {
		return nil, err
	}
	s.code.push = s.pushCode
	s.routes = s.buildRoutes()
	s.handler = http.HandlerFunc(s.serveHTTP)
	cfg.Node.Register(PartName, part{s})
	s.eic = newEventInvokeStore(s)
	cfg.Node.Register(EventInvokePartName, s.eic)
	s.esm = &esmStore{m: map[string]*EventSourceMapping{}}
	cfg.Node.Register(ESMPartName, s.esm)
	return s, nil
}

func hostArchitecture() string {
	if runtime.GOARCH == "arm64" {
		return "arm64"
	}
	return "x86_64"
}

// Handler serves the management routes. Callers must have put the
// authenticated account into the request context (tenant.WithAccount).
func (s *Service) Handler() http.Handler { return s.handler }

// OnRetire registers fn to be called with the Key of every version that
// stops being current (function deleted, $LATEST replaced, version deleted).
// It is called from the Raft apply path after the state lock is released, so
// it must return quickly and must not call back into the Service's writers.
func (s *Service) OnRetire(fn func(key string)) {
	s.retireMu.Lock()
	defer s.retireMu.Unlock()
	s.onRetire = append(s.onRetire, fn)
}

func (s *Service) retire(keys []string) {
	if len(keys) == 0 {
		return
	}
	s.retireMu.Lock()
	fns := append([]func(string){}, s.onRetire...)
	s.retireMu.Unlock()
	for _, k := range keys {
		for _, fn := range fns {
			fn(k)
		}
	}
}

// CodePath is where the zip with this hex SHA-256 is stored; "" for a
// string that is not a SHA-256 hex digest.
func (s *Service) CodePath(sha256hex string) string { return s.code.path(sha256hex) }

// Resolve maps an invoke target to a version: functionRef is a name,
// name:qualifier, ARN or partial ARN; qualifier is the ?Qualifier value.
// pick ∈ [0,1) chooses between an alias's versions by their weights.
// It reads only the local in-memory replica.
func (s *Service) Resolve(ctx context.Context, accountID, functionRef, qualifier string, pick float64) (*Resolved, error) {
	ref, ok := parseFunctionRef(functionRef)
	if !ok {
		return nil, errFunctionName(functionRef)
	}
	q := ref.qualifier
	if qualifier != "" {
		if q != "" && q != qualifier {
			return nil, errQualifierMismatch()
		}
		q = qualifier
	}
	if (ref.account != "" && ref.account != accountID) || (ref.region != "" && ref.region != s.region) {
		return nil, s.refNotFound(ref, accountID, q)
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	fn := s.st.Functions[accountID][ref.name]
	if fn == nil {
		return nil, s.fnNotFound(accountID, ref.name, q)
	}
	switch {
	case q == "":
		return &Resolved{Version: fn.Latest.pub, ExecutedVersion: latestVersion, InvokedArn: fn.arn}, nil
	case q == latestVersion:
		return &Resolved{Version: fn.Latest.pub, ExecutedVersion: latestVersion, InvokedArn: fn.Latest.arn}, nil
	}
	if v := fn.Versions[q]; v != nil {
		return &Resolved{Version: v.pub, ExecutedVersion: v.Version, InvokedArn: v.arn}, nil
	}
	a := fn.Aliases[q]
	if a == nil {
		return nil, s.fnNotFound(accountID, ref.name, q)
	}
	target := a.FunctionVersion
	if a.extra != "" && pick < a.extraWeight {
		target = a.extra
	}
	v := fn.Latest
	if target != latestVersion {
		v = fn.Versions[target]
	}
	if v == nil { // apply keeps aliases pointing at live versions; be safe anyway
		return nil, s.fnNotFound(accountID, ref.name, q)
	}
	return &Resolved{Version: v.pub, ExecutedVersion: v.Version, InvokedArn: a.arn}, nil
}

func errQualifierMismatch() error {
	return errdefs.InvalidParameter("The derived qualifier from the function name does not match the specified qualifier.")
}

// refNotFound names what the caller asked for without revealing whether it
// exists in another account or region.
func (s *Service) refNotFound(ref funcRef, accountID, qualifier string) error {
	region, account := s.region, accountID
	if ref.region != "" {
		region = ref.region
	}
	if ref.account != "" {
		account = ref.account
	}
	arn := "arn:aws:lambda:" + region + ":" + account + ":function:" + ref.name
	if qualifier != "" {
		arn += ":" + qualifier
	}
	return errdefs.ResourceNotFound("Function not found: %s", arn)
}

// LookupKey returns the secret and account of an access key id, from memory.
// An unknown key gives an error matching errdefs.ErrNotFound (rendered as
// UnrecognizedClientException).
func (s *Service) LookupKey(ctx context.Context, accessKeyID string) (secret, accountID string, err error) {
	s.mu.RLock()
	a := s.st.keys[accessKeyID]
	s.mu.RUnlock()
	if a == nil {
		return "", "", &errdefs.APIError{Class: errdefs.ErrNotFound, Code: "UnrecognizedClientException", Message: "The security token included in the request is invalid."}
	}
	return a.SecretAccessKey, a.ID, nil
}

// Accounts lists every account, ordered by id.
func (s *Service) Accounts() []Account {
	s.mu.RLock()
	out := make([]Account, 0, len(s.st.Accounts))
	for _, a := range s.st.Accounts {
		out = append(out, Account{ID: a.ID, AccessKeyID: a.AccessKeyID, SecretAccessKey: a.SecretAccessKey, Admin: a.Admin})
	}
	s.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// CreateAccount makes an account with a 12-digit id and one access key, all
// drawn from Config.Rand, and waits until it is durable.
func (s *Service) CreateAccount(ctx context.Context, admin bool) (Account, error) {
	for attempt := 0; ; attempt++ {
		var a accountState
		var err error
		if a.ID, err = s.randString(12, digitChars); err == nil {
			if a.AccessKeyID, err = s.randString(16, akidChars); err == nil {
				a.SecretAccessKey, err = s.randString(40, secretChars)
			}
		}
		if err != nil {
			return Account{}, fmt.Errorf("controlplane: generate account: %w", err)
		}
		a.AccessKeyID = "AKIA" + a.AccessKeyID
		a.Admin = admin
		a.Created = s.now().UnixMilli()
		_, err = s.propose(ctx, &command{Op: opCreateAccount, Acct: &a})
		if errors.Is(err, errdefs.ErrConflict) && attempt < 5 {
			continue // an id or key collided; draw again
		}
		if err != nil {
			return Account{}, err
		}
		s.log.Info("account created", "account", a.ID, "admin", admin)
		return Account{ID: a.ID, AccessKeyID: a.AccessKeyID, SecretAccessKey: a.SecretAccessKey, Admin: admin}, nil
	}
}

const (
	digitChars  = "0123456789"
	akidChars   = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567" // as AWS: upper case and digits 2-7
	secretChars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
)

// randString draws n characters uniformly from alphabet (rejection sampling,
// so no character is favoured).
func (s *Service) randString(n int, alphabet string) (string, error) {
	out := make([]byte, 0, n)
	limit := 256 - 256%len(alphabet)
	buf := make([]byte, n*2)
	for len(out) < n {
		if _, err := io.ReadFull(s.rand, buf); err != nil {
			return "", err
		}
		for _, b := range buf {
			if int(b) < limit && len(out) < n {
				out = append(out, alphabet[int(b)%len(alphabet)])
			}
		}
	}
	return string(out), nil
}

func (s *Service) newRevision() (string, error) {
	u, err := uuid.NewRandomFromReader(s.rand)
	if err != nil {
		return "", fmt.Errorf("controlplane: revision id: %w", err)
	}
	return u.String(), nil
}

// propose replicates cmd and returns what apply produced.
func (s *Service) propose(ctx context.Context, cmd *command) (*applyResult, error) {
	return applyAs[*applyResult](ctx, s.node, PartName, cmd)
}

// applyAs encodes cmd, replicates it to part and checks the type of what
// the part's Apply returned; every part of the control plane proposes
// through it.
func applyAs[T any](ctx context.Context, node *consensus.Node, part string, cmd any) (T, error) {
	var zero T
	b, err := json.Marshal(cmd)
	if err != nil {
		return zero, fmt.Errorf("controlplane: encode %s command: %w", part, err)
	}
	res, err := node.Apply(ctx, part, b)
	if err != nil {
		return zero, err
	}
	r, ok := res.(T)
	if !ok {
		return zero, fmt.Errorf("controlplane: unexpected %s apply result %T", part, res)
	}
	return r, nil
}

type lockedReader struct {
	mu sync.Mutex
	r  io.Reader
}

func (l *lockedReader) Read(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.r.Read(p)
}

// part is the Service's consensus.Part.
type part struct{ s *Service }

func (p part) Apply(index uint64, b []byte) any {
	var cmd command
	if err := json.Unmarshal(b, &cmd); err != nil {
		return fmt.Errorf("controlplane: decode command at %d: %w", index, err)
	}
	var retired []string
	p.s.mu.Lock()
	res, err := p.s.apply(p.s.st, &cmd, &retired)
	p.s.mu.Unlock()
	p.s.retire(retired)
	if err != nil {
		return err
	}
	return res
}

func (p part) Snapshot() ([]byte, error) {
	p.s.mu.RLock()
	defer p.s.mu.RUnlock()
	return encodeState(p.s.st)
}

func (p part) Restore(b []byte) error {
	st := newState()
	if b != nil {
		if err := json.Unmarshal(b, st); err != nil {
			return fmt.Errorf("controlplane: decode snapshot: %w", err)
		}
	}
	p.s.rebuild(st)
	p.s.mu.Lock()
	old := p.s.st
	p.s.st = st
	p.s.mu.Unlock()
	p.s.retire(retiredBetween(old, st))
	return nil
}

// retiredBetween lists the Keys current in old but not in new.
func retiredBetween(old, new *state) []string {
	live := map[string]bool{}
	each := func(st *state, f func(string)) {
		for _, fns := range st.Functions {
			for _, fn := range fns {
				f(fn.Latest.pub.key)
				for _, v := range fn.Versions {
					f(v.pub.key)
				}
			}
		}
	}
	each(new, func(k string) { live[k] = true })
	var out []string
	each(old, func(k string) {
		if !live[k] {
			out = append(out, k)
		}
	})
	sort.Strings(out)
	return out
}
