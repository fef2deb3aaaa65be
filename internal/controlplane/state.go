package controlplane

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strconv"

	"github.com/kiln-dev/kiln/internal/errdefs"
)

// The replicated state. Everything here changes only in apply (the Raft FSM
// goroutine) under Service.mu; readers hold Service.mu.RLock.
//
// verState and aliasState values are immutable once built: an update makes a
// new one, so a pointer read under the lock stays consistent after it is
// released. fnState is mutated in place, only under the write lock.

type state struct {
	Accounts  map[string]*accountState       `json:"accounts"`
	Functions map[string]map[string]*fnState `json:"functions"` // account → name → function

	// Derived (rebuilt on restore, kept current by apply).
	keys map[string]*accountState // access key id → account
	refs map[string]int           // code sha256 hex → versions that use it
}

type accountState struct {
	ID              string `json:"id"`
	AccessKeyID     string `json:"akid"`
	SecretAccessKey string `json:"secret"`
	Admin           bool   `json:"admin,omitempty"`
	Created         int64  `json:"created"`
}

type fnState struct {
	Account  string                 `json:"account"`
	Name     string                 `json:"name"`
	Latest   *verState              `json:"latest"`
	Versions map[string]*verState   `json:"versions,omitempty"`
	Aliases  map[string]*aliasState `json:"aliases,omitempty"`
	Tags     map[string]string      `json:"tags,omitempty"`
	// LastVersion is the highest version number ever published; numbers are
	// never reused, even after the version is deleted.
	LastVersion int `json:"lastVersion,omitempty"`

	arn string // derived
}

type verState struct {
	Account          string            `json:"account"`
	FunctionName     string            `json:"fn"`
	Version          string            `json:"version"`
	Description      string            `json:"description,omitempty"`
	Runtime          string            `json:"runtime"`
	Role             string            `json:"role"`
	Handler          string            `json:"handler,omitempty"`
	MemorySize       int               `json:"memory"`
	Timeout          int               `json:"timeout"`
	EphemeralStorage int               `json:"ephemeral"`
	Env              map[string]string `json:"env,omitempty"`
	TracingMode      string            `json:"tracing"`
	Architectures    []string          `json:"arch"`
	CodeSha256       string            `json:"sha"`
	CodeSha256Hex    string            `json:"shaHex"`
	CodeSize         int64             `json:"size"`
	UnzippedSize     int64             `json:"unzipped,omitempty"`
	RevisionId       string            `json:"rev"`
	LastModified     int64             `json:"modified"`      // unix milliseconds
	DeadLetterArn    string            `json:"dlq,omitempty"` // DeadLetterConfig.TargetArn (deadletter.go)

	pub *Version // derived: the runtime view handed to invokers
	arn string   // derived: qualified ARN (…:$LATEST for $LATEST)
}

type aliasState struct {
	Name            string             `json:"name"`
	FunctionVersion string             `json:"version"`
	Description     string             `json:"description,omitempty"`
	Weights         map[string]float64 `json:"weights,omitempty"`
	RevisionId      string             `json:"rev"`

	arn string // derived
	// extra is the one additional version and its weight, derived from
	// Weights so Resolve does not iterate a map.
	extra       string
	extraWeight float64
}

func newState() *state {
	return &state{
		Accounts:  map[string]*accountState{},
		Functions: map[string]map[string]*fnState{},
		keys:      map[string]*accountState{},
		refs:      map[string]int{},
	}
}

// command is one replicated change. The proposer fills in every value that
// is not a pure function of the state (times, revision ids, keys).
type command struct {
	Op      string `json:"op"`
	Account string `json:"account,omitempty"`
	Name    string `json:"name,omitempty"`
	At      int64  `json:"at,omitempty"` // unix milliseconds, proposer's clock

	ExpectRev string `json:"expectRev,omitempty"` // RevisionId precondition
	Rev       string `json:"rev,omitempty"`       // new $LATEST (or alias) RevisionId
	Publish   bool   `json:"publish,omitempty"`
	VerRev    string `json:"verRev,omitempty"` // RevisionId of a version published by this command

	Latest *verState         `json:"latest,omitempty"` // createFunction
	Tags   map[string]string `json:"tags,omitempty"`   // createFunction
	Code   *codeRef          `json:"code,omitempty"`   // updateCode
	Arch   []string          `json:"arch,omitempty"`   // updateCode
	Patch  *configPatch      `json:"patch,omitempty"`  // updateConfig
	Alias  *aliasState       `json:"alias,omitempty"`  // createAlias
	APatch *aliasPatch       `json:"apatch,omitempty"` // updateAlias
	Target string            `json:"target,omitempty"` // version or alias name for delete*
	Desc   *string           `json:"desc,omitempty"`   // publishVersion
	Sha    string            `json:"sha,omitempty"`    // publishVersion CodeSha256 check
	Acct   *accountState     `json:"acct,omitempty"`   // createAccount
}

const (
	opCreateAccount  = "createAccount"
	opCreateFunction = "createFunction"
	opUpdateCode     = "updateCode"
	opUpdateConfig   = "updateConfig"
	opPublish        = "publishVersion"
	opDeleteFunction = "deleteFunction"
	opDeleteVersion  = "deleteVersion"
	opCreateAlias    = "createAlias"
	opUpdateAlias    = "updateAlias"
	opDeleteAlias    = "deleteAlias"
)

type codeRef struct {
	Sha256       string `json:"sha"`
	Sha256Hex    string `json:"shaHex"`
	Size         int64  `json:"size"`
	UnzippedSize int64  `json:"unzipped"`
}

// configPatch carries only the fields UpdateFunctionConfiguration set.
type configPatch struct {
	Runtime          *string            `json:"runtime,omitempty"`
	Role             *string            `json:"role,omitempty"`
	Handler          *string            `json:"handler,omitempty"`
	Description      *string            `json:"description,omitempty"`
	MemorySize       *int               `json:"memory,omitempty"`
	Timeout          *int               `json:"timeout,omitempty"`
	EphemeralStorage *int               `json:"ephemeral,omitempty"`
	Env              *map[string]string `json:"env,omitempty"`
	TracingMode      *string            `json:"tracing,omitempty"`
	DeadLetterArn    *string            `json:"dlq,omitempty"` // "" clears
}

type aliasPatch struct {
	Alias           string              `json:"alias"`
	FunctionVersion *string             `json:"version,omitempty"`
	Description     *string             `json:"description,omitempty"`
	Weights         *map[string]float64 `json:"weights,omitempty"`
}

// applyResult is what a successful command hands back to its proposer.
type applyResult struct {
	ver      *verState
	alias    *aliasState
	account  *accountState
	released []string // code sha256 hex no longer referenced by anything
}

// apply runs one command against st. It must be deterministic. retired
// collects the Keys of versions that stopped being current.
func (c *Service) apply(st *state, cmd *command, retired *[]string) (*applyResult, error) {
	switch cmd.Op {
	case opCreateAccount:
		return c.applyCreateAccount(st, cmd)
	}
	if cmd.Op == opCreateFunction {
		return c.applyCreateFunction(st, cmd)
	}
	fn := st.Functions[cmd.Account][cmd.Name]
	if fn == nil {
		return nil, c.fnNotFound(cmd.Account, cmd.Name, "")
	}
	res := &applyResult{}
	switch cmd.Op {
	case opUpdateCode, opUpdateConfig:
		old := fn.Latest
		if cmd.ExpectRev != "" && cmd.ExpectRev != old.RevisionId {
			return nil, errRevision()
		}
		nv := *old
		nv.pub = nil
		if cmd.Op == opUpdateCode {
			nv.CodeSha256, nv.CodeSha256Hex = cmd.Code.Sha256, cmd.Code.Sha256Hex
			nv.CodeSize, nv.UnzippedSize = cmd.Code.Size, cmd.Code.UnzippedSize
			if len(cmd.Arch) > 0 {
				nv.Architectures = cmd.Arch
			}
		} else {
			cmd.Patch.applyTo(&nv)
		}
		// Check every limit before the first mutation: a command either
		// applies whole or not at all.
		add := nv.CodeSize - old.CodeSize
		if cmd.Publish {
			add += nv.CodeSize
		}
		if err := c.checkStorage(st, cmd.Account, add); err != nil {
			return nil, err
		}
		nv.RevisionId, nv.LastModified = cmd.Rev, cmd.At
		c.setLatest(st, fn, &nv, res, retired)
		res.ver = fn.Latest
		if cmd.Publish {
			res.ver = c.publish(st, fn, cmd, nil)
		}
		return res, nil

	case opPublish:
		if cmd.ExpectRev != "" && cmd.ExpectRev != fn.Latest.RevisionId {
			return nil, errRevision()
		}
		if cmd.Sha != "" && cmd.Sha != fn.Latest.CodeSha256 {
			return nil, errdefs.InvalidParameter("CodeSHA256 (%s) is different from current CodeSHA256 in $LATEST (%s). Please try again.", cmd.Sha, fn.Latest.CodeSha256)
		}
		if !c.unchanged(fn) {
			if err := c.checkStorage(st, cmd.Account, fn.Latest.CodeSize); err != nil {
				return nil, err
			}
		}
		res.ver = c.publish(st, fn, cmd, cmd.Desc)
		return res, nil

	case opDeleteFunction:
		*retired = append(*retired, fn.Latest.pub.key)
		c.unref(st, fn.Latest.CodeSha256Hex, res)
		for _, v := range fn.Versions {
			*retired = append(*retired, v.pub.key)
			c.unref(st, v.CodeSha256Hex, res)
		}
		delete(st.Functions[cmd.Account], cmd.Name)
		if len(st.Functions[cmd.Account]) == 0 {
			delete(st.Functions, cmd.Account)
		}
		c.forgetAsyncLocked(cmd.Account, cmd.Name)
		return res, nil

	case opDeleteVersion:
		v := fn.Versions[cmd.Target]
		if v == nil {
			return nil, c.fnNotFound(cmd.Account, cmd.Name, cmd.Target)
		}
		if users := aliasesUsing(fn, cmd.Target); len(users) > 0 {
			return nil, errdefs.ResourceConflict("Unable to delete version because the following aliases reference it: %v", users)
		}
		delete(fn.Versions, cmd.Target)
		*retired = append(*retired, v.pub.key)
		c.unref(st, v.CodeSha256Hex, res)
		return res, nil

	case opCreateAlias:
		a := *cmd.Alias
		if fn.Aliases[a.Name] != nil {
			return nil, errdefs.ResourceConflict("Alias already exists: %s:%s", fn.arn, a.Name)
		}
		if err := c.checkAliasTarget(fn, a.FunctionVersion, a.Weights); err != nil {
			return nil, err
		}
		c.deriveAlias(fn, &a)
		if fn.Aliases == nil {
			fn.Aliases = map[string]*aliasState{}
		}
		fn.Aliases[a.Name] = &a
		res.alias = &a
		return res, nil

	case opUpdateAlias:
		p := cmd.APatch
		old := fn.Aliases[p.Alias]
		if old == nil {
			return nil, c.aliasNotFound(fn, p.Alias)
		}
		if cmd.ExpectRev != "" && cmd.ExpectRev != old.RevisionId {
			return nil, errRevision()
		}
		a := *old
		if p.FunctionVersion != nil {
			a.FunctionVersion = *p.FunctionVersion
		}
		if p.Description != nil {
			a.Description = *p.Description
		}
		if p.Weights != nil {
			a.Weights = *p.Weights
			if len(a.Weights) == 0 {
				a.Weights = nil
			}
		}
		if err := c.checkAliasTarget(fn, a.FunctionVersion, a.Weights); err != nil {
			return nil, err
		}
		a.RevisionId = cmd.Rev
		c.deriveAlias(fn, &a)
		fn.Aliases[a.Name] = &a
		res.alias = &a
		return res, nil

	case opDeleteAlias:
		if fn.Aliases[cmd.Target] == nil {
			// DeleteAlias of a missing alias succeeds in Lambda.
			return res, nil
		}
		delete(fn.Aliases, cmd.Target)
		return res, nil
	}
	return nil, fmt.Errorf("controlplane: unknown command %q", cmd.Op)
}

func errRevision() error {
	return errdefs.PreconditionFailed("The Revision Id provided does not match the latest Revision Id. Call the GetFunction/GetAlias API to retrieve the latest Revision Id")
}

func (c *Service) applyCreateAccount(st *state, cmd *command) (*applyResult, error) {
	a := *cmd.Acct
	if st.Accounts[a.ID] != nil || st.keys[a.AccessKeyID] != nil {
		return nil, errdefs.ResourceConflict("Account or access key already exists.")
	}
	st.Accounts[a.ID] = &a
	st.keys[a.AccessKeyID] = &a
	return &applyResult{account: &a}, nil
}

func (c *Service) applyCreateFunction(st *state, cmd *command) (*applyResult, error) {
	if st.Functions[cmd.Account][cmd.Name] != nil {
		return nil, errdefs.ResourceConflict("Function already exist: %s", cmd.Name)
	}
	v := *cmd.Latest
	add := v.CodeSize
	if cmd.Publish {
		add *= 2
	}
	if err := c.checkStorage(st, cmd.Account, add); err != nil {
		return nil, err
	}
	fn := &fnState{Account: cmd.Account, Name: cmd.Name, Tags: cmd.Tags}
	c.deriveFn(fn)
	if st.Functions[cmd.Account] == nil {
		st.Functions[cmd.Account] = map[string]*fnState{}
	}
	st.Functions[cmd.Account][cmd.Name] = fn
	res := &applyResult{}
	c.setLatest(st, fn, &v, res, nil)
	res.ver = fn.Latest
	if cmd.Publish {
		res.ver = c.publish(st, fn, cmd, nil)
	}
	return res, nil
}

// setLatest installs v as $LATEST, retiring the old one and moving the code
// reference.
func (c *Service) setLatest(st *state, fn *fnState, v *verState, res *applyResult, retired *[]string) {
	v.Version = latestVersion
	v.Account, v.FunctionName = fn.Account, fn.Name
	c.deriveVer(fn, v)
	st.refs[v.CodeSha256Hex]++
	if old := fn.Latest; old != nil {
		if retired != nil {
			*retired = append(*retired, old.pub.key)
		}
		c.unref(st, old.CodeSha256Hex, res)
	}
	fn.Latest = v
}

// publish makes a version from $LATEST, or returns the newest version when
// $LATEST has not changed since it was published (as Lambda does).
// The caller has checked the storage quota.
func (c *Service) publish(st *state, fn *fnState, cmd *command, desc *string) *verState {
	if c.unchanged(fn) {
		return fn.Versions[strconv.Itoa(fn.LastVersion)]
	}
	v := *fn.Latest
	v.pub = nil
	fn.LastVersion++
	v.Version = strconv.Itoa(fn.LastVersion)
	v.RevisionId = cmd.VerRev
	v.LastModified = cmd.At
	if desc != nil {
		v.Description = *desc
	}
	c.deriveVer(fn, &v)
	if fn.Versions == nil {
		fn.Versions = map[string]*verState{}
	}
	fn.Versions[v.Version] = &v
	st.refs[v.CodeSha256Hex]++
	return &v
}

// unchanged reports whether $LATEST has the same code and configuration as
// the newest version, in which case Lambda publishes nothing new and returns
// that version. The description does not count, as in Lambda.
func (c *Service) unchanged(fn *fnState) bool {
	last := fn.Versions[strconv.Itoa(fn.LastVersion)]
	return last != nil && sameContent(fn.Latest, last)
}

func sameContent(a, b *verState) bool {
	return a.CodeSha256Hex == b.CodeSha256Hex && a.Runtime == b.Runtime && a.Role == b.Role &&
		a.Handler == b.Handler && a.MemorySize == b.MemorySize && a.Timeout == b.Timeout &&
		a.EphemeralStorage == b.EphemeralStorage && a.TracingMode == b.TracingMode &&
		maps.Equal(a.Env, b.Env) && slices.Equal(a.Architectures, b.Architectures) &&
		a.DeadLetterArn == b.DeadLetterArn
}

func (c *Service) unref(st *state, hex string, res *applyResult) {
	st.refs[hex]--
	if st.refs[hex] <= 0 {
		delete(st.refs, hex)
		res.released = append(res.released, hex)
	}
}

// TotalCodeSize is Lambda's per-account code storage quota (75 GB).
const TotalCodeSize int64 = 80530636800

func accountCodeSize(st *state, account string) int64 {
	var n int64
	for _, fn := range st.Functions[account] {
		n += fn.Latest.CodeSize
		for _, v := range fn.Versions {
			n += v.CodeSize
		}
	}
	return n
}

func (c *Service) checkStorage(st *state, account string, add int64) error {
	if add <= 0 {
		return nil
	}
	if accountCodeSize(st, account)+add > TotalCodeSize {
		return &errdefs.APIError{Class: errdefs.ErrTooLarge, Code: "CodeStorageExceededException", Message: "Code storage limit exceeded."}
	}
	return nil
}

func (c *Service) checkAliasTarget(fn *fnState, version string, weights map[string]float64) error {
	if version != latestVersion && fn.Versions[version] == nil {
		return c.fnNotFound(fn.Account, fn.Name, version)
	}
	if len(weights) > 1 {
		return errdefs.InvalidParameter("Number of items in AdditionalVersionWeights cannot be greater than 1")
	}
	for extra := range weights {
		if version == latestVersion {
			return errdefs.InvalidParameter("$LATEST is not supported for an alias pointing to more than 1 version")
		}
		if extra == version {
			return errdefs.InvalidParameter("Invalid function version %s. Function version %s is already included in routing configuration.", extra, extra)
		}
		if fn.Versions[extra] == nil {
			return c.fnNotFound(fn.Account, fn.Name, extra)
		}
	}
	return nil
}

func aliasesUsing(fn *fnState, version string) []string {
	var names []string
	for name, a := range fn.Aliases {
		if a.FunctionVersion == version {
			names = append(names, name)
			continue
		}
		if _, ok := a.Weights[version]; ok {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	return names
}

func (p *configPatch) applyTo(v *verState) {
	if p.Runtime != nil {
		v.Runtime = *p.Runtime
	}
	if p.Role != nil {
		v.Role = *p.Role
	}
	if p.Handler != nil {
		v.Handler = *p.Handler
	}
	if p.Description != nil {
		v.Description = *p.Description
	}
	if p.MemorySize != nil {
		v.MemorySize = *p.MemorySize
	}
	if p.Timeout != nil {
		v.Timeout = *p.Timeout
	}
	if p.EphemeralStorage != nil {
		v.EphemeralStorage = *p.EphemeralStorage
	}
	if p.Env != nil {
		v.Env = *p.Env
		if len(v.Env) == 0 {
			v.Env = nil
		}
	}
	if p.TracingMode != nil {
		v.TracingMode = *p.TracingMode
	}
	if p.DeadLetterArn != nil {
		v.DeadLetterArn = *p.DeadLetterArn
	}
}

// Derived fields.

func (c *Service) functionArn(account, name string) string {
	return "arn:aws:lambda:" + c.region + ":" + account + ":function:" + name
}

func (c *Service) deriveFn(fn *fnState) { fn.arn = c.functionArn(fn.Account, fn.Name) }

func (c *Service) deriveVer(fn *fnState, v *verState) {
	v.arn = fn.arn + ":" + v.Version
	v.pub = &Version{
		AccountID:        fn.Account,
		FunctionName:     fn.Name,
		FunctionArn:      fn.arn,
		Version:          v.Version,
		Runtime:          v.Runtime,
		Handler:          v.Handler,
		MemorySize:       v.MemorySize,
		Timeout:          v.Timeout,
		Environment:      v.Env,
		EphemeralStorage: v.EphemeralStorage,
		CodeSha256:       v.CodeSha256,
		CodeSha256Hex:    v.CodeSha256Hex,
		CodeSize:         v.CodeSize,
		RevisionId:       v.RevisionId,
		State:            stateActive,
	}
	v.pub.key = v.pub.computeKey()
}

func (c *Service) deriveAlias(fn *fnState, a *aliasState) {
	a.arn = fn.arn + ":" + a.Name
	a.extra, a.extraWeight = "", 0
	for k, w := range a.Weights {
		a.extra, a.extraWeight = k, w
	}
}

// rebuild recomputes every derived field after a restore.
func (c *Service) rebuild(st *state) {
	if st.Accounts == nil {
		st.Accounts = map[string]*accountState{}
	}
	if st.Functions == nil {
		st.Functions = map[string]map[string]*fnState{}
	}
	st.keys = make(map[string]*accountState, len(st.Accounts))
	for _, a := range st.Accounts {
		st.keys[a.AccessKeyID] = a
	}
	st.refs = map[string]int{}
	for _, fns := range st.Functions {
		for _, fn := range fns {
			c.deriveFn(fn)
			c.deriveVer(fn, fn.Latest)
			st.refs[fn.Latest.CodeSha256Hex]++
			for _, v := range fn.Versions {
				c.deriveVer(fn, v)
				st.refs[v.CodeSha256Hex]++
			}
			for _, a := range fn.Aliases {
				c.deriveAlias(fn, a)
			}
		}
	}
}

func (c *Service) fnNotFound(account, name, qualifier string) error {
	arn := c.functionArn(account, name)
	if qualifier != "" {
		arn += ":" + qualifier
	}
	return errdefs.ResourceNotFound("Function not found: %s", arn)
}

func (c *Service) aliasNotFound(fn *fnState, alias string) error {
	return errdefs.ResourceNotFound("Alias not found: %s:%s", fn.arn, alias)
}

func encodeState(st *state) ([]byte, error) { return json.Marshal(st) }
