package controlplane

import (
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/kiln-dev/kiln/internal/awsapi"
	"github.com/kiln-dev/kiln/internal/codepkg"
	"github.com/kiln-dev/kiln/internal/errdefs"
	"github.com/kiln-dev/kiln/internal/runtimes"
	"github.com/kiln-dev/kiln/internal/tenant"
)

// call is one management request being served.
type call struct {
	w       http.ResponseWriter
	r       *http.Request
	ctx     context.Context
	reqID   string
	account string
	op      string
	segs    []string
	query   url.Values
}

// handlerFunc serves one operation. It returns the status and JSON reply,
// or written{} when it has already written a non-JSON reply itself.
type handlerFunc func(c *call) (status int, reply any, err error)

type written struct{}

func (s *Service) serveHTTP(w http.ResponseWriter, r *http.Request) {
	c := &call{w: w, r: r, ctx: r.Context(), reqID: requestID(r), query: r.URL.Query()}
	t0 := time.Now()
	status, err := s.dispatch(c)
	if err != nil {
		awsapi.WriteError(w, s.log, c.reqID, err)
	}
	s.log.Debug("management request", "op", c.op, "account", c.account, "status", status,
		"request_id", c.reqID, "elapsed", time.Since(t0), "err", err)
}

// requestID reuses the id a fronting layer already assigned, so logs match.
func requestID(r *http.Request) string {
	if id := r.Header.Get("X-Amzn-Requestid"); id != "" {
		return id
	}
	return awsapi.RequestID()
}

func (s *Service) dispatch(c *call) (int, error) {
	acct, ok := tenant.Account(c.ctx)
	if !ok {
		return 0, errdefs.MissingAuthenticationToken()
	}
	c.account = acct
	segs, err := awsapi.Segments(c.r.URL.EscapedPath())
	if err != nil {
		return 0, err
	}
	c.segs = segs
	op, h := s.route(c.r.Method, segs)
	c.op = op
	if h == nil {
		return 0, &errdefs.APIError{Class: errdefs.ErrNotFound, Code: "UnknownOperationException", Message: "Unknown operation " + c.r.Method + " " + c.r.URL.EscapedPath()}
	}
	status, reply, err := h(c)
	if err != nil {
		return 0, err
	}
	if _, done := reply.(written); !done {
		awsapi.WriteJSON(c.w, c.reqID, status, reply)
	}
	return status, nil
}

type routeKey struct{ method, shape string }

type routeEntry struct {
	op string
	h  handlerFunc
}

func (s *Service) buildRoutes() map[routeKey]routeEntry {
	return map[routeKey]routeEntry{
		{"GET", "functions"}:                         {"ListFunctions", s.listFunctions},
		{"POST", "functions"}:                        {"CreateFunction", s.createFunction},
		{"GET", "functions/{fn}"}:                    {"GetFunction", s.getFunction},
		{"DELETE", "functions/{fn}"}:                 {"DeleteFunction", s.deleteFunction},
		{"GET", "functions/{fn}/configuration"}:      {"GetFunctionConfiguration", s.getFunctionConfiguration},
		{"PUT", "functions/{fn}/configuration"}:      {"UpdateFunctionConfiguration", s.updateFunctionConfiguration},
		{"PUT", "functions/{fn}/code"}:               {"UpdateFunctionCode", s.updateFunctionCode},
		{"GET", "functions/{fn}/versions"}:           {"ListVersionsByFunction", s.listVersions},
		{"POST", "functions/{fn}/versions"}:          {"PublishVersion", s.publishVersion},
		{"GET", "functions/{fn}/aliases"}:            {"ListAliases", s.listAliases},
		{"POST", "functions/{fn}/aliases"}:           {"CreateAlias", s.createAlias},
		{"GET", "functions/{fn}/aliases/{alias}"}:    {"GetAlias", s.getAlias},
		{"PUT", "functions/{fn}/aliases/{alias}"}:    {"UpdateAlias", s.updateAlias},
		{"DELETE", "functions/{fn}/aliases/{alias}"}: {"DeleteAlias", s.deleteAlias},
		{"GET", "account-settings"}:                  {"GetAccountSettings", s.getAccountSettings},
		{"POST", "kiln/accounts"}:                    {"KilnCreateAccount", s.kilnCreateAccount},
		{"GET", "kiln/accounts"}:                     {"KilnListAccounts", s.kilnListAccounts},
		{"GET", "kiln/functions/{fn}/code"}:          {"KilnGetFunctionCode", s.kilnGetCode},
		{"GET", "kiln/metrics"}:                      {"KilnGetMetrics", s.kilnGetMetrics},
		// eventinvoke.go
		{"PUT", "eic"}:      {"PutFunctionEventInvokeConfig", s.putEventInvokeConfig},
		{"POST", "eic"}:     {"UpdateFunctionEventInvokeConfig", s.putEventInvokeConfig},
		{"GET", "eic"}:      {"GetFunctionEventInvokeConfig", s.getEventInvokeConfig},
		{"DELETE", "eic"}:   {"DeleteFunctionEventInvokeConfig", s.deleteEventInvokeConfig},
		{"GET", "eic/list"}: {"ListFunctionEventInvokeConfigs", s.listEventInvokeConfigs},
		// esm.go
		{"POST", "esm"}:        {"CreateEventSourceMapping", s.createESM},
		{"GET", "esm"}:         {"ListEventSourceMappings", s.listESMs},
		{"GET", "esm/{id}"}:    {"GetEventSourceMapping", s.getESM},
		{"PUT", "esm/{id}"}:    {"UpdateEventSourceMapping", s.updateESM},
		{"DELETE", "esm/{id}"}: {"DeleteEventSourceMapping", s.deleteESM},
		// Concurrency (concurrency.go): the path dates differ per operation.
		{"PUT", "2017-10-31/functions/{fn}/concurrency"}:                {"PutFunctionConcurrency", s.putFunctionConcurrency},
		{"GET", "2019-09-30/functions/{fn}/concurrency"}:                {"GetFunctionConcurrency", s.getFunctionConcurrency},
		{"DELETE", "2017-10-31/functions/{fn}/concurrency"}:             {"DeleteFunctionConcurrency", s.deleteFunctionConcurrency},
		{"PUT", "2019-09-30/functions/{fn}/provisioned-concurrency"}:    {"PutProvisionedConcurrencyConfig", s.putProvisionedConcurrency},
		{"GET", "2019-09-30/functions/{fn}/provisioned-concurrency"}:    {"GetProvisionedConcurrencyConfig", s.getProvisionedConcurrency},
		{"DELETE", "2019-09-30/functions/{fn}/provisioned-concurrency"}: {"DeleteProvisionedConcurrencyConfig", s.deleteProvisionedConcurrency},
		{"PUT", "kiln/accounts/{id}/concurrency"}:                       {"KilnSetAccountConcurrency", s.kilnSetAccountConcurrency},
	}
}

// route maps a method and path segments to an operation. Path parameters are
// whole segments, so an escaped ':' or '/' inside a name cannot change the route.
func (s *Service) route(method string, p []string) (string, handlerFunc) {
	if len(p) < 2 {
		return "", nil
	}
	shape := ""
	switch {
	case p[0] == "2015-03-31" && p[1] == "functions":
		switch len(p) {
		case 2:
			shape = "functions"
		case 3:
			shape = "functions/{fn}"
		case 4:
			shape = "functions/{fn}/" + p[3]
		case 5:
			if p[3] == "aliases" {
				shape = "functions/{fn}/aliases/{alias}"
			}
		}
	case len(p) == 4 && (p[0] == "2017-10-31" || p[0] == "2019-09-30") && p[1] == "functions":
		shape = p[0] + "/functions/{fn}/" + p[3]
	case len(p) == 5 && p[0] == "2026-01-01" && p[1] == "kiln" && p[2] == "accounts":
		shape = "kiln/accounts/{id}/" + p[4]
	case p[0] == "2015-03-31" && p[1] == "event-source-mappings" && len(p) <= 3:
		shape = "esm"
		if len(p) == 3 {
			shape = "esm/{id}"
		}
	case p[0] == "2019-09-25" && p[1] == "functions" && len(p) >= 4 && p[3] == "event-invoke-config":
		switch {
		case len(p) == 4:
			shape = "eic"
		case len(p) == 5 && p[4] == "list":
			shape = "eic/list"
		}
	case len(p) == 2 && p[0] == "2016-08-19" && p[1] == "account-settings":
		shape = "account-settings"
	case len(p) == 3 && p[0] == "2026-01-01" && p[1] == "kiln" && (p[2] == "accounts" || p[2] == "metrics"):
		shape = "kiln/" + p[2]
	case len(p) == 5 && p[0] == "2026-01-01" && p[1] == "kiln" && p[2] == "functions" && p[4] == "code":
		shape = "kiln/functions/{fn}/code"
	}
	rt, ok := s.routes[routeKey{method, shape}]
	if !ok {
		return "", nil
	}
	return rt.op, rt.h
}

// body reads and decodes the JSON body, bounded by limit.
func (c *call) body(limit int64, v any) error {
	tooLarge := errdefs.RequestTooLarge("Request must be smaller than %d bytes for the %s operation", limit, c.op)
	b, err := awsapi.ReadBody(c.r, limit, tooLarge)
	if err != nil {
		return err
	}
	return awsapi.DecodeJSON(b, v)
}

// target is a function named in the path, checked against the caller.
type target struct {
	name      string
	qualifier string // from name:qualifier or ?Qualifier
}

// target parses the {fn} path segment (and ?Qualifier when allowed). A
// reference to another account or region fails as not found, so it never
// reveals anything about that account.
func (s *Service) target(c *call, allowQualifier bool) (target, error) {
	raw := c.segs[2]
	if c.segs[0] == "2026-01-01" {
		raw = c.segs[3]
	}
	ref, ok := parseFunctionRef(raw)
	if !ok {
		return target{}, errFunctionName(raw)
	}
	t := target{name: ref.name, qualifier: ref.qualifier}
	if allowQualifier {
		q := c.query.Get("Qualifier")
		if err := checkQualifierParam(q); err != nil {
			return t, err
		}
		if q != "" {
			if t.qualifier != "" && t.qualifier != q {
				return t, errQualifierMismatch()
			}
			t.qualifier = q
		}
	} else if t.qualifier != "" && t.qualifier != latestVersion {
		return t, errdefs.InvalidParameter("The %s operation does not accept a qualified function name (%s).", c.op, raw)
	}
	if (ref.account != "" && ref.account != c.account) || (ref.region != "" && ref.region != s.region) {
		return t, s.refNotFound(ref, c.account, t.qualifier)
	}
	return t, nil
}

// lookupLocked finds the caller's function; the caller holds s.mu.
func (s *Service) lookupLocked(account string, t target) (*fnState, error) {
	fn := s.st.Functions[account][t.name]
	if fn == nil {
		return nil, s.fnNotFound(account, t.name, "")
	}
	return fn, nil
}

// versionLocked finds the version a qualifier names; for an alias it is the
// alias's primary version and arn is the alias ARN.
func (s *Service) versionLocked(fn *fnState, qualifier string) (v *verState, arn string, err error) {
	switch {
	case qualifier == "":
		return fn.Latest, fn.arn, nil
	case qualifier == latestVersion:
		return fn.Latest, fn.Latest.arn, nil
	}
	if v := fn.Versions[qualifier]; v != nil {
		return v, v.arn, nil
	}
	if a := fn.Aliases[qualifier]; a != nil {
		v := fn.Latest
		if a.FunctionVersion != latestVersion {
			v = fn.Versions[a.FunctionVersion]
		}
		if v != nil {
			return v, a.arn, nil
		}
	}
	return nil, "", s.fnNotFound(fn.Account, fn.Name, qualifier)
}

// ---- functions ----

func (s *Service) createFunction(c *call) (int, any, error) {
	var in createFunctionInput
	if err := c.body(MaxCodeBody, &in); err != nil {
		return 0, nil, err
	}
	var v vErrs
	var ref funcRef
	switch {
	case in.FunctionName == nil:
		v.null("functionName")
	case len(*in.FunctionName) > 140:
		v.maxLen(*in.FunctionName, "functionName", 140)
	default:
		var ok bool
		if ref, ok = parseFunctionRef(*in.FunctionName); !ok {
			if len(*in.FunctionName) > maxNameLen && !strings.Contains(*in.FunctionName, ":") {
				v.maxLen(*in.FunctionName, "functionName", maxNameLen)
			} else {
				v.pattern(*in.FunctionName, "functionName", functionNamePattern)
			}
		}
	}
	if in.Role == nil {
		v.null("role")
	}
	if in.Code == nil {
		v.null("code")
	}
	if in.PackageType != nil {
		v.enum(*in.PackageType, "packageType", "Zip", "Image")
	}
	archErr := s.checkArchitectures(&v, in.Architectures)
	st, err := s.checkSettings(&v, settings{
		runtime: in.Runtime, role: in.Role, handler: in.Handler, description: in.Description,
		memory: in.MemorySize, timeout: in.Timeout,
	}, in.Environment, in.TracingConfig, in.EphemeralStorage, in.Layers)
	if err != nil {
		return 0, nil, err
	}
	switch {
	case archErr != nil:
		return 0, nil, archErr
	case ref.qualifier != "":
		return 0, nil, errdefs.InvalidParameter("FunctionName must not carry a qualifier when creating a function: %s", *in.FunctionName)
	case (ref.account != "" && ref.account != c.account) || (ref.region != "" && ref.region != s.region):
		return 0, nil, errdefs.AccessDenied("The caller may not create functions in account %s, region %s.", ref.account, ref.region)
	case in.PackageType != nil && *in.PackageType == "Image":
		return 0, nil, errdefs.InvalidParameter("PackageType Image is not supported by Kiln; use Zip.")
	case in.Runtime == nil:
		return 0, nil, errdefs.InvalidParameter("Runtime is required for .zip file archive functions. Supported runtimes: [%s].", strings.Join(runtimes.Names(), ", "))
	case in.Handler == nil && !isProvided(*in.Runtime):
		return 0, nil, errdefs.InvalidParameter("Handler is required for .zip file archive functions.")
	}
	if err := checkS3Code(in.Code.S3Bucket, in.Code.S3Key, in.Code.S3ObjectVersion, in.Code.ImageUri); err != nil {
		return 0, nil, err
	}
	if len(in.Code.ZipFile) == 0 {
		return 0, nil, errdefs.InvalidParameter("Please provide a source for function code (ZipFile).")
	}
	if err := checkTags(in.Tags); err != nil {
		return 0, nil, err
	}
	dlq, err := s.checkDeadLetter(c.account, in.DeadLetterConfig)
	if err != nil {
		return 0, nil, err
	}
	info, err := codepkg.Inspect(in.Code.ZipFile, codepkg.DefaultLimits)
	if err != nil {
		return 0, nil, err
	}

	ver := &verState{
		Runtime:          *in.Runtime,
		Role:             *in.Role,
		MemorySize:       DefaultMemory,
		Timeout:          DefaultTimeout,
		EphemeralStorage: DefaultEphemeral,
		TracingMode:      tracingPassThrough,
		Architectures:    []string{s.hostArch},
		CodeSha256:       info.Sha256,
		CodeSha256Hex:    info.Sha256Hex,
		CodeSize:         info.Size,
		UnzippedSize:     info.UnzippedSize,
	}
	(&configPatch{Handler: st.handler, Description: st.description, MemorySize: st.memory, Timeout: st.timeout,
		EphemeralStorage: st.ephemeral, Env: st.env, TracingMode: st.tracing, DeadLetterArn: dlq}).applyTo(ver)
	if len(ver.Env) == 0 {
		ver.Env = nil
	}
	cmd := &command{Op: opCreateFunction, Account: c.account, Name: ref.name, Latest: ver, Tags: in.Tags, Publish: in.Publish}
	if err := s.stamp(cmd); err != nil {
		return 0, nil, err
	}
	ver.RevisionId, ver.LastModified = cmd.Rev, cmd.At

	// Fail fast on the common conflict before writing code; apply decides.
	s.mu.RLock()
	exists := s.st.Functions[c.account][ref.name] != nil
	s.mu.RUnlock()
	if exists {
		return 0, nil, errdefs.ResourceConflict("Function already exist: %s", ref.name)
	}
	res, err := s.proposeWithCode(c.ctx, cmd, info.Sha256Hex, in.Code.ZipFile)
	if err != nil {
		return 0, nil, err
	}
	s.log.Info("function created", "account", c.account, "function", ref.name, "code_sha256", info.Sha256Hex, "code_size", info.Size)
	return http.StatusCreated, configuration(res.ver, s.replyArn(res.ver)), nil
}

// replyArn is the FunctionArn a write reply shows: unqualified for $LATEST.
func (s *Service) replyArn(v *verState) string {
	if v.Version == latestVersion {
		return s.functionArn(v.Account, v.FunctionName)
	}
	return v.arn
}

func isProvided(runtime string) bool { return strings.HasPrefix(runtime, "provided") }

// stamp fills in the command's time and fresh revision ids.
func (s *Service) stamp(cmd *command) error {
	cmd.At = s.now().UnixMilli()
	var err error
	if cmd.Rev, err = s.newRevision(); err != nil {
		return err
	}
	cmd.VerRev, err = s.newRevision()
	return err
}

// proposeWithCode stores the zip durably, then replicates the command that
// references it; garbage collection cannot run in between.
func (s *Service) proposeWithCode(ctx context.Context, cmd *command, hex string, zip []byte) (*applyResult, error) {
	s.code.mu.RLock()
	if err := s.code.put(hex, zip); err != nil {
		s.code.mu.RUnlock()
		return nil, err
	}
	res, err := s.propose(ctx, cmd)
	s.code.mu.RUnlock()
	if err != nil {
		// The zip may now be unreferenced (e.g. a conflict); collect it.
		s.releaseCode([]string{hex})
		return nil, err
	}
	s.releaseCode(res.released)
	return res, nil
}

// readVersion is the common start of the read operations: the call's
// function and the version its qualifier names, under the read lock, which
// it returns held (the caller unlocks).
func (s *Service) readVersion(c *call) (*fnState, *verState, string, error) {
	t, err := s.target(c, true)
	if err != nil {
		return nil, nil, "", err
	}
	s.mu.RLock()
	fn, err := s.lookupLocked(c.account, t)
	if err != nil {
		s.mu.RUnlock()
		return nil, nil, "", err
	}
	v, arn, err := s.versionLocked(fn, t.qualifier)
	if err != nil {
		s.mu.RUnlock()
		return nil, nil, "", err
	}
	return fn, v, arn, nil
}

func (s *Service) getFunction(c *call) (int, any, error) {
	fn, v, arn, err := s.readVersion(c)
	if err != nil {
		return 0, nil, err
	}
	defer s.mu.RUnlock()
	out := getFunctionOutput{
		Configuration: configuration(v, arn),
		Code:          functionCodeLocation{RepositoryType: "S3", Location: codeLocation(c.r, fn.Name, v.Version)},
	}
	if len(fn.Tags) > 0 {
		out.Tags = fn.Tags
	}
	out.Concurrency = s.concurrencyOf(c.account, fn.Name)
	return http.StatusOK, out, nil
}

// codeLocation is where Kiln serves the version's zip (the Kiln route below;
// Lambda would give a presigned S3 URL).
func codeLocation(r *http.Request, name, version string) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host + "/2026-01-01/kiln/functions/" + name + "/code?Qualifier=" + url.QueryEscape(version)
}

func (s *Service) getFunctionConfiguration(c *call) (int, any, error) {
	_, v, arn, err := s.readVersion(c)
	if err != nil {
		return 0, nil, err
	}
	defer s.mu.RUnlock()
	return http.StatusOK, configuration(v, arn), nil
}

// listMarker encodes the sort key of the last item returned; the next page
// starts strictly after it, so deletions between pages skip nothing.
func encodeMarker(name string, order int) string {
	return base64.RawURLEncoding.EncodeToString([]byte(name + "\n" + strconv.Itoa(order)))
}

func decodeMarker(m string) (name string, order int, err error) {
	b, derr := base64.RawURLEncoding.DecodeString(m)
	name, o, ok := strings.Cut(string(b), "\n")
	n, aerr := strconv.Atoi(o)
	if derr != nil || !ok || aerr != nil {
		return "", 0, errdefs.InvalidParameter("Invalid marker: %s", m)
	}
	return name, n, nil
}

func after(name string, order int, mName string, mOrder int) bool {
	return name > mName || name == mName && order > mOrder
}

func (s *Service) listFunctions(c *call) (int, any, error) {
	max, err := parseMaxItems(c.query.Get("MaxItems"))
	if err != nil {
		return 0, nil, err
	}
	all := false
	if fv := c.query.Get("FunctionVersion"); fv != "" {
		var v vErrs
		v.enum(fv, "functionVersion", "ALL")
		if err := v.err(); err != nil {
			return 0, nil, err
		}
		all = true
	}
	var mName string
	mOrder := -1
	if m := c.query.Get("Marker"); m != "" {
		if mName, mOrder, err = decodeMarker(m); err != nil {
			return 0, nil, err
		}
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	fns := s.st.Functions[c.account]
	names := make([]string, 0, len(fns))
	for n := range fns {
		if n >= mName {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	out := listFunctionsOutput{Functions: []functionConfiguration{}}
	emit := func(v *verState, arn string, name string, order int) bool {
		if !after(name, order, mName, mOrder) {
			return true
		}
		if len(out.Functions) == max {
			out.NextMarker = encodeMarker(lastKey(out.Functions))
			return false
		}
		out.Functions = append(out.Functions, configuration(v, arn))
		return true
	}
	for _, n := range names {
		fn := fns[n]
		arn := fn.arn
		if all {
			arn = fn.Latest.arn
		}
		if !emit(fn.Latest, arn, n, 0) {
			break
		}
		if all {
			more := true
			for _, v := range sortedVersions(fn) {
				if more = emit(v, v.arn, n, versionOrder(v.Version)); !more {
					break
				}
			}
			if !more {
				break
			}
		}
	}
	return http.StatusOK, out, nil
}

func lastKey(fcs []functionConfiguration) (string, int) {
	l := fcs[len(fcs)-1]
	return l.FunctionName, versionOrder(l.Version)
}

func (s *Service) updateFunctionCode(c *call) (int, any, error) {
	t, err := s.target(c, false)
	if err != nil {
		return 0, nil, err
	}
	var in updateCodeInput
	if err := c.body(MaxCodeBody, &in); err != nil {
		return 0, nil, err
	}
	var v vErrs
	archErr := s.checkArchitectures(&v, in.Architectures)
	if err := v.err(); err != nil {
		return 0, nil, err
	}
	if archErr != nil {
		return 0, nil, archErr
	}
	if err := checkS3Code(in.S3Bucket, in.S3Key, in.S3ObjectVersion, in.ImageUri); err != nil {
		return 0, nil, err
	}
	if len(in.ZipFile) == 0 {
		return 0, nil, errdefs.InvalidParameter("Please provide a source for function code (ZipFile).")
	}
	info, err := codepkg.Inspect(in.ZipFile, codepkg.DefaultLimits)
	if err != nil {
		return 0, nil, err
	}
	cmd := &command{
		Op: opUpdateCode, Account: c.account, Name: t.name, Publish: in.Publish, Arch: in.Architectures,
		Code: &codeRef{Sha256: info.Sha256, Sha256Hex: info.Sha256Hex, Size: info.Size, UnzippedSize: info.UnzippedSize},
	}
	if in.RevisionId != nil {
		cmd.ExpectRev = *in.RevisionId
	}
	if in.DryRun {
		return s.dryRun(c, t, cmd)
	}
	if err := s.stamp(cmd); err != nil {
		return 0, nil, err
	}
	res, err := s.proposeWithCode(c.ctx, cmd, info.Sha256Hex, in.ZipFile)
	if err != nil {
		return 0, nil, err
	}
	s.log.Info("function code updated", "account", c.account, "function", t.name, "code_sha256", info.Sha256Hex, "version", res.ver.Version)
	return http.StatusOK, configuration(res.ver, s.replyArn(res.ver)), nil
}

// dryRun answers UpdateFunctionCode's DryRun: the configuration the update
// would produce, with nothing stored.
func (s *Service) dryRun(c *call, t target, cmd *command) (int, any, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	fn, err := s.lookupLocked(c.account, t)
	if err != nil {
		return 0, nil, err
	}
	if cmd.ExpectRev != "" && cmd.ExpectRev != fn.Latest.RevisionId {
		return 0, nil, errRevision()
	}
	v := *fn.Latest
	v.CodeSha256, v.CodeSha256Hex, v.CodeSize = cmd.Code.Sha256, cmd.Code.Sha256Hex, cmd.Code.Size
	if len(cmd.Arch) > 0 {
		v.Architectures = cmd.Arch
	}
	return http.StatusOK, configuration(&v, fn.arn), nil
}

func (s *Service) updateFunctionConfiguration(c *call) (int, any, error) {
	t, err := s.target(c, false)
	if err != nil {
		return 0, nil, err
	}
	var in updateConfigInput
	if err := c.body(MaxOtherBody, &in); err != nil {
		return 0, nil, err
	}
	var v vErrs
	st, err := s.checkSettings(&v, settings{
		runtime: in.Runtime, role: in.Role, handler: in.Handler, description: in.Description,
		memory: in.MemorySize, timeout: in.Timeout,
	}, in.Environment, in.TracingConfig, in.EphemeralStorage, in.Layers)
	if err != nil {
		return 0, nil, err
	}
	patch := &configPatch{Runtime: st.runtime, Role: st.role, Handler: st.handler, Description: st.description,
		MemorySize: st.memory, Timeout: st.timeout, EphemeralStorage: st.ephemeral, Env: st.env, TracingMode: st.tracing}
	if patch.Env != nil && len(*patch.Env) == 0 {
		patch.Env = &map[string]string{}
	}
	if patch.DeadLetterArn, err = s.checkDeadLetter(c.account, in.DeadLetterConfig); err != nil {
		return 0, nil, err
	}
	cmd := &command{Op: opUpdateConfig, Account: c.account, Name: t.name, Patch: patch}
	if in.RevisionId != nil {
		cmd.ExpectRev = *in.RevisionId
	}
	if err := s.stamp(cmd); err != nil {
		return 0, nil, err
	}
	res, err := s.propose(c.ctx, cmd)
	if err != nil {
		return 0, nil, err
	}
	s.releaseCode(res.released)
	s.log.Info("function configuration updated", "account", c.account, "function", t.name)
	return http.StatusOK, configuration(res.ver, s.replyArn(res.ver)), nil
}

func (s *Service) deleteFunction(c *call) (int, any, error) {
	t, err := s.target(c, true)
	if err != nil {
		return 0, nil, err
	}
	cmd := &command{Op: opDeleteFunction, Account: c.account, Name: t.name}
	switch {
	case t.qualifier == latestVersion:
		return 0, nil, errdefs.InvalidParameter("$LATEST version cannot be deleted without deleting the function.")
	case t.qualifier != "" && !isVersionNumber(t.qualifier):
		return 0, nil, errdefs.InvalidParameter("Deletion of aliases is not supported through DeleteFunction; use DeleteAlias for %s.", t.qualifier)
	case t.qualifier != "":
		cmd.Op, cmd.Target = opDeleteVersion, t.qualifier
	}
	res, err := s.propose(c.ctx, cmd)
	if err != nil {
		return 0, nil, err
	}
	s.releaseCode(res.released)
	if t.qualifier == "" {
		s.functionDeleted(c.ctx, c.account, t.name)
	}
	s.log.Info("function deleted", "account", c.account, "function", t.name, "qualifier", t.qualifier)
	return http.StatusNoContent, nil, nil
}

// ---- versions ----

func (s *Service) publishVersion(c *call) (int, any, error) {
	t, err := s.target(c, false)
	if err != nil {
		return 0, nil, err
	}
	var in publishVersionInput
	if err := c.body(MaxOtherBody, &in); err != nil {
		return 0, nil, err
	}
	var v vErrs
	if in.Description != nil && len(*in.Description) > MaxDescription {
		v.maxLen(*in.Description, "description", MaxDescription)
	}
	if err := v.err(); err != nil {
		return 0, nil, err
	}
	cmd := &command{Op: opPublish, Account: c.account, Name: t.name, Desc: in.Description}
	if in.CodeSha256 != nil {
		cmd.Sha = *in.CodeSha256
	}
	if in.RevisionId != nil {
		cmd.ExpectRev = *in.RevisionId
	}
	if err := s.stamp(cmd); err != nil {
		return 0, nil, err
	}
	res, err := s.propose(c.ctx, cmd)
	if err != nil {
		return 0, nil, err
	}
	s.log.Info("version published", "account", c.account, "function", t.name, "version", res.ver.Version)
	return http.StatusCreated, configuration(res.ver, res.ver.arn), nil
}

func (s *Service) listVersions(c *call) (int, any, error) {
	t, err := s.target(c, false)
	if err != nil {
		return 0, nil, err
	}
	max, err := parseMaxItems(c.query.Get("MaxItems"))
	if err != nil {
		return 0, nil, err
	}
	mOrder := -1
	if m := c.query.Get("Marker"); m != "" {
		if _, mOrder, err = decodeMarker(m); err != nil {
			return 0, nil, err
		}
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	fn, err := s.lookupLocked(c.account, t)
	if err != nil {
		return 0, nil, err
	}
	out := listVersionsOutput{Versions: []functionConfiguration{}}
	for _, v := range append([]*verState{fn.Latest}, sortedVersions(fn)...) {
		o := versionOrder(v.Version)
		if o <= mOrder {
			continue
		}
		if len(out.Versions) == max {
			out.NextMarker = encodeMarker(fn.Name, versionOrder(out.Versions[len(out.Versions)-1].Version))
			break
		}
		out.Versions = append(out.Versions, configuration(v, v.arn))
	}
	return http.StatusOK, out, nil
}

// ---- aliases ----

func (s *Service) checkAliasInput(in *aliasInput, create bool) error {
	var v vErrs
	if create {
		switch {
		case in.Name == nil:
			v.null("name")
		case len(*in.Name) > 128:
			v.maxLen(*in.Name, "name", 128)
		case !isAliasName(*in.Name):
			v.pattern(*in.Name, "name", aliasNamePattern)
		}
		if in.FunctionVersion == nil {
			v.null("functionVersion")
		}
	}
	if fv := in.FunctionVersion; fv != nil && *fv != latestVersion && !isVersionNumber(*fv) {
		v.pattern(*fv, "functionVersion", aliasVersionPattern)
	}
	if in.Description != nil && len(*in.Description) > MaxDescription {
		v.maxLen(*in.Description, "description", MaxDescription)
	}
	if in.RoutingConfig != nil {
		checkWeights(&v, in.RoutingConfig.AdditionalVersionWeights)
	}
	return v.err()
}

func (s *Service) createAlias(c *call) (int, any, error) {
	t, err := s.target(c, false)
	if err != nil {
		return 0, nil, err
	}
	var in aliasInput
	if err := c.body(MaxOtherBody, &in); err != nil {
		return 0, nil, err
	}
	if err := s.checkAliasInput(&in, true); err != nil {
		return 0, nil, err
	}
	a := &aliasState{Name: *in.Name, FunctionVersion: *in.FunctionVersion}
	if in.Description != nil {
		a.Description = *in.Description
	}
	if in.RoutingConfig != nil && len(in.RoutingConfig.AdditionalVersionWeights) > 0 {
		a.Weights = in.RoutingConfig.AdditionalVersionWeights
	}
	cmd := &command{Op: opCreateAlias, Account: c.account, Name: t.name, Alias: a}
	if err := s.stamp(cmd); err != nil {
		return 0, nil, err
	}
	a.RevisionId = cmd.Rev
	res, err := s.propose(c.ctx, cmd)
	if err != nil {
		return 0, nil, err
	}
	s.log.Info("alias created", "account", c.account, "function", t.name, "alias", a.Name, "version", a.FunctionVersion)
	return http.StatusCreated, aliasConfig(res.alias), nil
}

func (s *Service) aliasName(c *call) (string, error) {
	name := c.segs[4]
	if !isAliasName(name) {
		var v vErrs
		v.pattern(name, "name", aliasNamePattern)
		return "", v.err()
	}
	return name, nil
}

func (s *Service) getAlias(c *call) (int, any, error) {
	t, err := s.target(c, false)
	if err != nil {
		return 0, nil, err
	}
	name, err := s.aliasName(c)
	if err != nil {
		return 0, nil, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	fn, err := s.lookupLocked(c.account, t)
	if err != nil {
		return 0, nil, err
	}
	a := fn.Aliases[name]
	if a == nil {
		return 0, nil, s.aliasNotFound(fn, name)
	}
	return http.StatusOK, aliasConfig(a), nil
}

func (s *Service) updateAlias(c *call) (int, any, error) {
	t, err := s.target(c, false)
	if err != nil {
		return 0, nil, err
	}
	name, err := s.aliasName(c)
	if err != nil {
		return 0, nil, err
	}
	var in aliasInput
	if err := c.body(MaxOtherBody, &in); err != nil {
		return 0, nil, err
	}
	if err := s.checkAliasInput(&in, false); err != nil {
		return 0, nil, err
	}
	p := &aliasPatch{Alias: name, FunctionVersion: in.FunctionVersion, Description: in.Description}
	if in.RoutingConfig != nil {
		// Never a pointer to a nil map: it would encode as null and arrive
		// in apply as "no change".
		w := in.RoutingConfig.AdditionalVersionWeights
		if w == nil {
			w = map[string]float64{}
		}
		p.Weights = &w
	}
	cmd := &command{Op: opUpdateAlias, Account: c.account, Name: t.name, APatch: p}
	if in.RevisionId != nil {
		cmd.ExpectRev = *in.RevisionId
	}
	if err := s.stamp(cmd); err != nil {
		return 0, nil, err
	}
	res, err := s.propose(c.ctx, cmd)
	if err != nil {
		return 0, nil, err
	}
	s.log.Info("alias updated", "account", c.account, "function", t.name, "alias", name, "version", res.alias.FunctionVersion)
	return http.StatusOK, aliasConfig(res.alias), nil
}

func (s *Service) deleteAlias(c *call) (int, any, error) {
	t, err := s.target(c, false)
	if err != nil {
		return 0, nil, err
	}
	name, err := s.aliasName(c)
	if err != nil {
		return 0, nil, err
	}
	if _, err := s.propose(c.ctx, &command{Op: opDeleteAlias, Account: c.account, Name: t.name, Target: name}); err != nil {
		return 0, nil, err
	}
	s.log.Info("alias deleted", "account", c.account, "function", t.name, "alias", name)
	return http.StatusNoContent, nil, nil
}

func (s *Service) listAliases(c *call) (int, any, error) {
	t, err := s.target(c, false)
	if err != nil {
		return 0, nil, err
	}
	max, err := parseMaxItems(c.query.Get("MaxItems"))
	if err != nil {
		return 0, nil, err
	}
	fv := c.query.Get("FunctionVersion")
	if fv != "" && fv != latestVersion && !isVersionNumber(fv) {
		var v vErrs
		v.pattern(fv, "functionVersion", aliasVersionPattern)
		return 0, nil, v.err()
	}
	var mName string
	if m := c.query.Get("Marker"); m != "" {
		if mName, _, err = decodeMarker(m); err != nil {
			return 0, nil, err
		}
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	fn, err := s.lookupLocked(c.account, t)
	if err != nil {
		return 0, nil, err
	}
	names := make([]string, 0, len(fn.Aliases))
	for n, a := range fn.Aliases {
		if (mName == "" || n > mName) && (fv == "" || a.FunctionVersion == fv || hasWeight(a, fv)) {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	out := listAliasesOutput{Aliases: []aliasConfiguration{}}
	for _, n := range names {
		if len(out.Aliases) == max {
			out.NextMarker = encodeMarker(out.Aliases[len(out.Aliases)-1].Name, 0)
			break
		}
		out.Aliases = append(out.Aliases, aliasConfig(fn.Aliases[n]))
	}
	return http.StatusOK, out, nil
}

func hasWeight(a *aliasState, v string) bool {
	_, ok := a.Weights[v]
	return ok
}

// ---- account ----

func (s *Service) getAccountSettings(c *call) (int, any, error) {
	limit, unreserved := s.accountConcurrency(c.account)
	s.mu.RLock()
	defer s.mu.RUnlock()
	return http.StatusOK, accountSettingsOutput{
		AccountLimit: accountLimit{
			CodeSizeUnzipped:               CodeSizeUnzipped,
			CodeSizeZipped:                 CodeSizeZipped,
			ConcurrentExecutions:           limit,
			TotalCodeSize:                  TotalCodeSize,
			UnreservedConcurrentExecutions: unreserved,
		},
		AccountUsage: accountUsage{
			FunctionCount: int64(len(s.st.Functions[c.account])),
			TotalCodeSize: accountCodeSize(s.st, c.account),
		},
	}, nil
}

// ---- Kiln's own routes ----

// IsAdmin reports whether account is the operator's admin account.
func (s *Service) IsAdmin(account string) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	a := s.st.Accounts[account]
	return a != nil && a.Admin
}

func (s *Service) requireAdmin(c *call) error {
	if !s.IsAdmin(c.account) {
		return errdefs.AccessDenied("Account %s is not authorized to perform: kiln:%s", c.account, c.op)
	}
	return nil
}

func (s *Service) kilnCreateAccount(c *call) (int, any, error) {
	if err := s.requireAdmin(c); err != nil {
		return 0, nil, err
	}
	var in createAccountInput
	if err := c.body(MaxOtherBody, &in); err != nil {
		return 0, nil, err
	}
	a, err := s.CreateAccount(c.ctx, in.Admin)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusCreated, createAccountOutput{AccountId: a.ID, AccessKeyId: a.AccessKeyID, SecretAccessKey: a.SecretAccessKey}, nil
}

func (s *Service) kilnListAccounts(c *call) (int, any, error) {
	if err := s.requireAdmin(c); err != nil {
		return 0, nil, err
	}
	out := listAccountsOutput{Accounts: []accountSummary{}}
	for _, a := range s.Accounts() {
		out.Accounts = append(out.Accounts, accountSummary{AccountId: a.ID, AccessKeyId: a.AccessKeyID, Admin: a.Admin})
	}
	return http.StatusOK, out, nil
}

// kilnGetCode serves a version's zip to its owner (GetFunction's Location).
func (s *Service) kilnGetCode(c *call) (int, any, error) {
	t, err := s.target(c, true)
	if err != nil {
		return 0, nil, err
	}
	s.mu.RLock()
	fn, err := s.lookupLocked(c.account, t)
	var v *verState
	if err == nil {
		v, _, err = s.versionLocked(fn, t.qualifier)
	}
	s.mu.RUnlock()
	if err != nil {
		return 0, nil, err
	}
	s.ensureCode(c.ctx, v.CodeSha256Hex) // a cluster node may lack it (replicate.go)
	// Hold the code lock while opening so the file cannot be collected
	// first; once open, a later unlink does not disturb the read.
	s.code.mu.RLock()
	f, err := os.Open(s.code.path(v.CodeSha256Hex))
	s.code.mu.RUnlock()
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return 0, nil, s.fnNotFound(c.account, t.name, t.qualifier)
		}
		return 0, nil, err
	}
	defer f.Close()
	awsapi.SetCommonHeaders(c.w, c.reqID)
	c.w.Header().Set("Content-Type", "application/zip")
	http.ServeContent(c.w, c.r, v.CodeSha256Hex+".zip", time.UnixMilli(v.LastModified), f)
	return http.StatusOK, written{}, nil
}
