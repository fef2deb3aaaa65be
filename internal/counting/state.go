package counting

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/kiln-dev/kiln/internal/errdefs"
)

// PartName is the consensus part the counting state is registered under.
const PartName = "counting"

// MinUnreserved is how much of an account's limit Lambda keeps unreserved.
const MinUnreserved = 100

// NoReservation is a Request.Reserved value: the function has no reserved
// concurrency and draws from the account's unreserved pool.
const NoReservation = -1

// FromState is a Request.Reserved value asking the Counter to use the
// function's reserved concurrency from the replicated state.
const FromState = -2

// Proposer commits a command to the replicated log (consensus.Node).
type Proposer interface {
	Apply(ctx context.Context, part string, cmd []byte) (any, error)
}

// pool is one budget of concurrency tokens: an account's unreserved pool
// (Function == ""), one function's reservation less its provisioned
// concurrency (Qualifier == ""), or one provisioned-concurrency
// configuration (Qualifier set). Provisioned concurrency is carved out of
// the reservation, or out of the account's unreserved pool for a function
// without one, as Lambda does: on-demand invokes never use it.
type pool struct {
	Account   string `json:"a"`
	Function  string `json:"f,omitempty"`
	Qualifier string `json:"q,omitempty"`
}

// accountState is one account's limits as replicated.
type accountState struct {
	Limit    int            `json:"limit,omitempty"` // 0 → DefaultAccountLimit
	Reserved map[string]int `json:"reserved,omitempty"`
	// Provisioned is function → qualifier → configuration.
	Provisioned map[string]map[string]ProvisionedConfig `json:"provisioned,omitempty"`
	// Scale is function → its share of the scaling-rate bucket (scaling.go).
	Scale map[string]*scaleBucket `json:"scale,omitempty"`
}

// holderState is one frontend's lease: the tokens it may admit with, per
// pool, until Expiry (unix ns of the proposer's clock).
type holderState struct {
	Expiry int64        `json:"expiry"`
	Grants map[pool]int `json:"-"`
}

// stateDoc is the snapshot encoding (maps with struct keys do not marshal).
type stateDoc struct {
	Accounts map[string]*accountState `json:"accounts,omitempty"`
	Holders  map[string]holderDoc     `json:"holders,omitempty"`
}

type holderDoc struct {
	Expiry int64        `json:"expiry"`
	Grants []grantEntry `json:"grants,omitempty"`
}

type grantEntry struct {
	Pool pool `json:"p"`
	N    int  `json:"n"`
}

// State is the counting service's replicated state machine: account limits,
// reserved concurrency per function and the token leases frontends hold. It
// is a consensus.Part; its Apply is deterministic (time comes in commands).
type State struct {
	mu       sync.RWMutex
	accounts map[string]*accountState
	holders  map[string]*holderState
	granted  map[pool]int // sum of grants per pool over live holders
}

// NewState returns an empty State.
func NewState() *State {
	return &State{accounts: map[string]*accountState{}, holders: map[string]*holderState{}, granted: map[pool]int{}}
}

// command ops.
const (
	opSetLimit       = "setLimit"
	opPutReserved    = "putReserved"
	opDeleteReserved = "deleteReserved"
	opLease          = "lease"
	// provisioned.go
	opPutProvisioned    = "putProvisioned"
	opDeleteProvisioned = "deleteProvisioned"
	opForgetFunction    = "forgetFunction"
	// scaling.go
	opScale = "scale"
)

// command is one replicated change. Now is the proposer's clock, so every
// replica expires the same leases at the same log index.
type command struct {
	Op        string       `json:"op"`
	Now       int64        `json:"now"`
	Account   string       `json:"account,omitempty"`
	Function  string       `json:"function,omitempty"`
	Value     int          `json:"value,omitempty"`
	Qualifier string       `json:"qualifier,omitempty"`
	Holder    string       `json:"holder,omitempty"`
	TTL       int64        `json:"ttl,omitempty"`
	Want      []grantEntry `json:"want,omitempty"`
	// Burst is the scaling bucket's size (opScale; TTL is its window).
	Burst int `json:"burst,omitempty"`
	// Reason is a provisioned configuration's StatusReason (opProvisionedStatus).
	Reason string `json:"reason,omitempty"`
}

// leaseResult is what a lease command grants the holder.
type leaseResult struct {
	Expiry int64
	Grants map[pool]int
}

var errBadCommand = errors.New("counting: malformed command")

// Apply implements consensus.Part.
func (s *State) Apply(_ uint64, b []byte) any {
	var c command
	if err := json.Unmarshal(b, &c); err != nil {
		return fmt.Errorf("%w: %w", errBadCommand, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expireLocked(c.Now)
	switch c.Op {
	case opSetLimit:
		if c.Value < 0 {
			return errdefs.InvalidParameter("Account concurrency limit must be at least 0.")
		}
		a := s.accountLocked(c.Account)
		if taken := sumReserved(a) + provisionedUnreserved(a, ""); c.Value < taken+MinUnreserved {
			return errdefs.InvalidParameter("Account concurrency limit %d leaves less than %d unreserved (reserved: %d).", c.Value, MinUnreserved, taken)
		}
		a.Limit = c.Value
		return nil
	case opPutReserved:
		if c.Value < 0 {
			return errReservedNegative(c.Value)
		}
		a := s.accountLocked(c.Account)
		// The function's own provisioned concurrency moves into the
		// reservation, so only the other functions' counts against it.
		others := sumReserved(a) - a.Reserved[c.Function] + provisionedUnreserved(a, c.Function)
		if limitOf(a)-others-c.Value < MinUnreserved {
			return errdefs.InvalidParameter("Specified ReservedConcurrentExecutions for function decreases account's UnreservedConcurrentExecution below its minimum value of [%d].", MinUnreserved)
		}
		if p := sumProvisioned(a, c.Function); p > c.Value {
			return errReservedBelowProvisioned(c.Value, p)
		}
		if a.Reserved == nil {
			a.Reserved = map[string]int{}
		}
		a.Reserved[c.Function] = c.Value
		return nil
	case opDeleteReserved:
		if a := s.accounts[c.Account]; a != nil {
			delete(a.Reserved, c.Function)
			s.dropPoolLocked(pool{Account: c.Account, Function: c.Function})
		}
		return nil
	case opPutProvisioned, opDeleteProvisioned, opForgetFunction, opProvisionedStatus:
		return s.applyProvisionedLocked(&c)
	case opScale:
		return s.scaleLocked(&c)
	case opLease:
		if c.Holder == "" || c.TTL <= 0 {
			return errBadCommand
		}
		return s.leaseLocked(&c)
	}
	return fmt.Errorf("%w: op %q", errBadCommand, c.Op)
}

func errReservedNegative(v int) error {
	return errdefs.Validation("1 validation error detected: Value '%d' at 'reservedConcurrentExecutions' failed to satisfy constraint: Member must have value greater than or equal to 0", v)
}

func (s *State) accountLocked(id string) *accountState {
	a := s.accounts[id]
	if a == nil {
		a = &accountState{}
		s.accounts[id] = a
	}
	return a
}

func limitOf(a *accountState) int {
	if a == nil || a.Limit == 0 {
		return DefaultAccountLimit
	}
	return a.Limit
}

func sumReserved(a *accountState) int {
	n := 0
	if a != nil {
		for _, v := range a.Reserved {
			n += v
		}
	}
	return n
}

// unreservedOf is the account's UnreservedConcurrentExecutions: the limit
// less every reservation and the provisioned concurrency of functions
// without one.
func unreservedOf(a *accountState) int {
	return max(0, limitOf(a)-sumReserved(a)-provisionedUnreserved(a, ""))
}

// capacityLocked is how many tokens a pool holds in all.
func (s *State) capacityLocked(p pool) int {
	a := s.accounts[p.Account]
	switch {
	case p.Qualifier != "":
		if a == nil {
			return 0
		}
		pc, ok := a.Provisioned[p.Function][p.Qualifier]
		if !ok || pc.Failed != "" {
			return 0 // a failed allocation serves nothing: invokes go on-demand
		}
		return pc.Requested
	case p.Function != "":
		if a == nil {
			return 0
		}
		r, ok := a.Reserved[p.Function]
		if !ok {
			return 0 // a deleted reservation has no pool
		}
		return max(0, r-sumProvisioned(a, p.Function))
	}
	return unreservedOf(a)
}

// expireLocked drops every lease that ended before now: a frontend that died
// holding tokens gives them back here.
func (s *State) expireLocked(now int64) {
	for id, h := range s.holders {
		if h.Expiry < now {
			for p, n := range h.Grants {
				s.subGrantLocked(p, n)
			}
			delete(s.holders, id)
		}
	}
}

func (s *State) subGrantLocked(p pool, n int) {
	if v := s.granted[p] - n; v > 0 {
		s.granted[p] = v
	} else {
		delete(s.granted, p)
	}
}

// dropPoolLocked forgets every grant on a pool that no longer exists.
func (s *State) dropPoolLocked(p pool) {
	for _, h := range s.holders {
		if n, ok := h.Grants[p]; ok {
			s.subGrantLocked(p, n)
			delete(h.Grants, p)
		}
	}
}

// leaseLocked renews the holder's lease and sets its grant on each wanted
// pool to as much of the wanted amount as the pool has free. A grant only
// falls below what the holder had if it asked for less or the pool's
// capacity was lowered under it (then it admits nothing new until it is
// back under its grant, as Lambda does when reserved concurrency is cut).
func (s *State) leaseLocked(c *command) leaseResult {
	h := s.holders[c.Holder]
	if h == nil {
		h = &holderState{Grants: map[pool]int{}}
		s.holders[c.Holder] = h
	}
	h.Expiry = c.Now + c.TTL
	for _, w := range c.Want {
		cur := h.Grants[w.Pool]
		free := s.capacityLocked(w.Pool) - (s.granted[w.Pool] - cur)
		g := min(max(w.N, 0), max(free, 0))
		s.subGrantLocked(w.Pool, cur)
		if g > 0 {
			h.Grants[w.Pool] = g
			s.granted[w.Pool] += g
		} else {
			delete(h.Grants, w.Pool)
		}
	}
	out := leaseResult{Expiry: h.Expiry, Grants: make(map[pool]int, len(h.Grants))}
	for p, n := range h.Grants {
		out.Grants[p] = n
	}
	if len(h.Grants) == 0 {
		delete(s.holders, c.Holder)
	}
	return out
}

// Snapshot implements consensus.Part.
func (s *State) Snapshot() ([]byte, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	doc := stateDoc{Accounts: s.accounts, Holders: map[string]holderDoc{}}
	for id, h := range s.holders {
		hd := holderDoc{Expiry: h.Expiry}
		for p, n := range h.Grants {
			hd.Grants = append(hd.Grants, grantEntry{p, n})
		}
		sortGrants(hd.Grants)
		doc.Holders[id] = hd
	}
	return json.Marshal(doc)
}

// Restore implements consensus.Part.
func (s *State) Restore(b []byte) error {
	var doc stateDoc
	if b != nil {
		if err := json.Unmarshal(b, &doc); err != nil {
			return fmt.Errorf("counting: restore: %w", err)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.accounts = doc.Accounts
	if s.accounts == nil {
		s.accounts = map[string]*accountState{}
	}
	s.holders = map[string]*holderState{}
	s.granted = map[pool]int{}
	for id, hd := range doc.Holders {
		h := &holderState{Expiry: hd.Expiry, Grants: map[pool]int{}}
		for _, g := range hd.Grants {
			h.Grants[g.Pool] = g.N
			s.granted[g.Pool] += g.N
		}
		s.holders[id] = h
	}
	return nil
}

func sortGrants(g []grantEntry) {
	for i := 1; i < len(g); i++ {
		for j := i; j > 0 && less(g[j].Pool, g[j-1].Pool); j-- {
			g[j], g[j-1] = g[j-1], g[j]
		}
	}
}

func less(a, b pool) bool {
	if a.Account != b.Account {
		return a.Account < b.Account
	}
	if a.Function != b.Function {
		return a.Function < b.Function
	}
	return a.Qualifier < b.Qualifier
}

// ---- reads (any goroutine) ----

// Reserved returns a function's reserved concurrency, or NoReservation.
func (s *State) Reserved(account, function string) int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if a := s.accounts[account]; a != nil {
		if v, ok := a.Reserved[function]; ok {
			return v
		}
	}
	return NoReservation
}

// AccountLimits returns an account's concurrency limit and the part of it
// not reserved by any function.
func (s *State) AccountLimits(account string) (limit, unreserved int) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	a := s.accounts[account]
	return limitOf(a), unreservedOf(a)
}

// Granted reports the tokens leased out on a function's pool ("" → the
// account's unreserved pool) across live holders.
func (s *State) Granted(account, function string) int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.granted[pool{Account: account, Function: function}]
}

// ---- writes (through consensus) ----

// Store is the State plus the way to change it: every write is a command
// committed through the Proposer.
type Store struct {
	*State
	prop Proposer
	now  func() time.Time
}

// NewStore returns a Store over a fresh State. Register st.State with the
// consensus node under PartName before it starts.
func NewStore(p Proposer) *Store {
	return &Store{State: NewState(), prop: p, now: time.Now}
}

func (s *Store) propose(ctx context.Context, c *command) (any, error) {
	c.Now = s.now().UnixNano()
	return s.proposeAt(ctx, c)
}

// proposeAt commits c with the time it already carries.
func (s *Store) proposeAt(ctx context.Context, c *command) (any, error) {
	b, err := json.Marshal(c)
	if err != nil {
		return nil, err
	}
	return s.prop.Apply(ctx, PartName, b)
}

// PutReserved sets a function's reserved concurrency (0 stops it).
func (s *Store) PutReserved(ctx context.Context, account, function string, n int) error {
	if n < 0 {
		return errReservedNegative(n)
	}
	_, err := s.propose(ctx, &command{Op: opPutReserved, Account: account, Function: function, Value: n})
	return err
}

// DeleteReserved removes a function's reservation (it draws on the
// unreserved pool again). Deleting a function calls it too.
func (s *Store) DeleteReserved(ctx context.Context, account, function string) error {
	_, err := s.propose(ctx, &command{Op: opDeleteReserved, Account: account, Function: function})
	return err
}

// SetAccountLimit sets an account's concurrency limit (the operator's quota).
func (s *Store) SetAccountLimit(ctx context.Context, account string, n int) error {
	_, err := s.propose(ctx, &command{Op: opSetLimit, Account: account, Value: n})
	return err
}

// lease commits a lease command for holder.
func (s *Store) lease(ctx context.Context, holder string, ttl time.Duration, sent time.Time, want []grantEntry) (leaseResult, error) {
	// Now is the send time, the same instant the holder's own expiry is
	// measured from, so the holder stops admitting before replicas reclaim.
	c := &command{Op: opLease, Now: sent.UnixNano(), Holder: holder, TTL: int64(ttl), Want: want}
	b, err := json.Marshal(c)
	if err != nil {
		return leaseResult{}, err
	}
	res, err := s.prop.Apply(ctx, PartName, b)
	if err != nil {
		return leaseResult{}, err
	}
	lr, ok := res.(leaseResult)
	if !ok {
		return leaseResult{}, fmt.Errorf("counting: lease: unexpected result %T", res)
	}
	return lr, nil
}
