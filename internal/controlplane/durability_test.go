package controlplane

import (
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kiln-dev/kiln/internal/errdefs"
)

// populate creates a function with two versions, an alias with routing, a
// second function sharing code, and an account.
func populate(t *testing.T, e *env) (Account, map[string]any) {
	t.Helper()
	steps := []struct {
		method, path string
		body         any
		status       int
	}{
		{"POST", "/2015-03-31/functions", createBody(t, "fn"), 201},
		{"POST", "/2015-03-31/functions/fn/versions", nil, 201},
		{"PUT", "/2015-03-31/functions/fn/code", map[string]any{"ZipFile": pyZip(t, "2"), "Publish": true}, 200},
		{"PUT", "/2015-03-31/functions/fn/configuration", map[string]any{"MemorySize": 512, "Environment": map[string]any{"Variables": map[string]string{"K1": "v"}}}, 200},
		{"POST", "/2015-03-31/functions/fn/aliases", map[string]any{"Name": "live", "FunctionVersion": "1", "RoutingConfig": map[string]any{"AdditionalVersionWeights": map[string]float64{"2": 0.25}}}, 201},
		{"POST", "/2015-03-31/functions", createBody(t, "other"), 201},
	}
	for _, s := range steps {
		if w := e.do(acctA, s.method, s.path, s.body); w.Code != s.status {
			t.Fatalf("%s %s: %d %s", s.method, s.path, w.Code, w.Body)
		}
	}
	acct, err := e.svc.CreateAccount(context.Background(), true)
	if err != nil {
		t.Fatal(err)
	}
	return acct, decode(t, e.do(acctA, "GET", "/2015-03-31/functions/fn", nil))
}

// snapshotOf is the part's encoded state (what a Raft snapshot holds).
func snapshotOf(t *testing.T, e *env) string {
	b, err := part{e.svc}.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestRestartDurability(t *testing.T) {
	for _, viaSnapshot := range []bool{false, true} {
		name := "log replay"
		if viaSnapshot {
			name = "snapshot"
		}
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			e := newEnv(t, dir)
			acct, before := populate(t, e)
			state := snapshotOf(t, e)
			if viaSnapshot {
				if err := e.node.Snapshot(context.Background()); err != nil {
					t.Fatal(err)
				}
			}
			e.Close()

			e = newEnv(t, dir)
			defer e.Close()
			if got := snapshotOf(t, e); got != state {
				t.Fatalf("state after restart differs:\n%s\n%s", got, state)
			}
			after := decode(t, e.do(acctA, "GET", "/2015-03-31/functions/fn", nil))
			if after["Configuration"].(map[string]any)["RevisionId"] != before["Configuration"].(map[string]any)["RevisionId"] {
				t.Fatalf("GetFunction after restart: %v", after)
			}
			secret, id, err := e.svc.LookupKey(context.Background(), acct.AccessKeyID)
			if err != nil || secret != acct.SecretAccessKey || id != acct.ID {
				t.Fatalf("account lost: %v", err)
			}
			r, err := e.svc.Resolve(context.Background(), acctA, "fn:live", "", 0.9)
			if err != nil || r.ExecutedVersion != "1" {
				t.Fatalf("Resolve after restart: %v %+v", err, r)
			}
			// Every version's code file is back.
			for _, q := range []string{"", "1", "2"} {
				r, err := e.svc.Resolve(context.Background(), acctA, "fn", q, 0)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := os.Stat(e.svc.CodePath(r.Version.CodeSha256Hex)); err != nil {
					t.Fatalf("code of fn:%s: %v", q, err)
				}
			}
			// Writes continue after the restart; version numbers are not reused.
			w := e.do(acctA, "PUT", "/2015-03-31/functions/fn/code", map[string]any{"ZipFile": pyZip(t, "3"), "Publish": true})
			if m := decode(t, w); m["Version"] != "3" {
				t.Fatalf("publish after restart: %v", m)
			}
		})
	}
}

func TestResolve(t *testing.T) {
	e := newEnv(t, t.TempDir())
	defer e.Close()
	populate(t, e)
	ctx := context.Background()
	tests := []struct {
		ref, qual, wantVer, wantArn string
		pick                        float64
		wantErr                     string
	}{
		{ref: "fn", wantVer: "$LATEST", wantArn: "arn:aws:lambda:us-east-1:111111111111:function:fn"},
		{ref: "fn:$LATEST", wantVer: "$LATEST", wantArn: "arn:aws:lambda:us-east-1:111111111111:function:fn:$LATEST"},
		{ref: "fn", qual: "1", wantVer: "1", wantArn: "arn:aws:lambda:us-east-1:111111111111:function:fn:1"},
		{ref: "arn:aws:lambda:us-east-1:111111111111:function:fn:2", wantVer: "2", wantArn: "arn:aws:lambda:us-east-1:111111111111:function:fn:2"},
		{ref: "111111111111:function:fn", qual: "live", pick: 0.1, wantVer: "2", wantArn: "arn:aws:lambda:us-east-1:111111111111:function:fn:live"},
		{ref: "fn:live", pick: 0.25, wantVer: "1", wantArn: "arn:aws:lambda:us-east-1:111111111111:function:fn:live"},
		{ref: "fn:live", qual: "live", pick: 0.99, wantVer: "1", wantArn: "arn:aws:lambda:us-east-1:111111111111:function:fn:live"},
		{ref: "fn:live", qual: "1", wantErr: "InvalidParameterValueException: The derived qualifier from the function name does not match the specified qualifier."},
		{ref: "fn:9", wantErr: "ResourceNotFoundException: Function not found: arn:aws:lambda:us-east-1:111111111111:function:fn:9"},
		{ref: "nope", wantErr: "ResourceNotFoundException: Function not found: arn:aws:lambda:us-east-1:111111111111:function:nope"},
		{ref: "arn:aws:lambda:us-east-1:222222222222:function:fn", wantErr: "ResourceNotFoundException: Function not found: arn:aws:lambda:us-east-1:222222222222:function:fn"},
		{ref: "bad name", wantErr: "ValidationException"},
	}
	for _, tt := range tests {
		t.Run(tt.ref+"?"+tt.qual, func(t *testing.T) {
			r, err := e.svc.Resolve(ctx, acctA, tt.ref, tt.qual, tt.pick)
			if tt.wantErr != "" {
				var ae *errdefs.APIError
				if !errors.As(err, &ae) || !strings.HasPrefix(err.Error(), tt.wantErr) {
					t.Fatalf("err %v, want %s", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if r.ExecutedVersion != tt.wantVer || r.Version.Version != tt.wantVer || r.InvokedArn != tt.wantArn {
				t.Fatalf("got %s %s %s", r.ExecutedVersion, r.Version.Version, r.InvokedArn)
			}
			if r.Version.State != "Active" || r.Version.FunctionName != "fn" || r.Version.AccountID != acctA || r.Version.Key() == "" {
				t.Fatalf("version %+v", r.Version)
			}
		})
	}
	latest, _ := e.svc.Resolve(ctx, acctA, "fn", "", 0)
	if latest.Version.MemorySize != 512 || latest.Version.Environment["K1"] != "v" || latest.Version.Timeout != 3 || latest.Version.Runtime != "python3.12" {
		t.Fatalf("$LATEST config %+v", latest.Version)
	}
}

// TestResolveWeights checks the alias split with fixed pick sequences: an
// even grid gives the exact share, a seeded PRNG stays within a tight band.
func TestResolveWeights(t *testing.T) {
	e := newEnv(t, t.TempDir())
	defer e.Close()
	populate(t, e) // live → 1, with 25% to 2
	ctx := context.Background()
	count := func(picks func(i int) float64, n int) int {
		extra := 0
		for i := range n {
			r, err := e.svc.Resolve(ctx, acctA, "fn", "live", picks(i))
			if err != nil {
				t.Fatal(err)
			}
			if r.ExecutedVersion == "2" {
				extra++
			}
		}
		return extra
	}
	if got := count(func(i int) float64 { return float64(i) / 1000 }, 1000); got != 250 {
		t.Fatalf("grid: %d of 1000 to version 2, want exactly 250", got)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	n := 20000
	got := count(func(int) float64 { return rng.Float64() }, n)
	if share := float64(got) / float64(n); share < 0.24 || share > 0.26 {
		t.Fatalf("PRNG: share %.4f to version 2, want 0.25±0.01", share)
	}
}

func TestOnRetire(t *testing.T) {
	e := newEnv(t, t.TempDir())
	defer e.Close()
	ctx := context.Background()
	e.do(acctA, "POST", "/2015-03-31/functions", createBody(t, "fn"))
	e.do(acctA, "POST", "/2015-03-31/functions/fn/versions", nil)
	key := func(q string) string {
		r, err := e.svc.Resolve(ctx, acctA, "fn", q, 0)
		if err != nil {
			t.Fatal(err)
		}
		return r.Version.Key()
	}
	latest0, v1 := key(""), key("1")
	if latest0 == v1 || !strings.HasPrefix(latest0, acctA+"/fn/$LATEST/") {
		t.Fatalf("keys %q %q", latest0, v1)
	}
	e.takeRetired()

	e.do(acctA, "PUT", "/2015-03-31/functions/fn/configuration", map[string]any{"Timeout": 9})
	latest1 := key("")
	if got := e.takeRetired(); !slices.Equal(got, []string{latest0}) || latest1 == latest0 {
		t.Fatalf("after config update retired %v", got)
	}
	e.do(acctA, "PUT", "/2015-03-31/functions/fn/code", map[string]any{"ZipFile": pyZip(t, "x"), "Publish": true})
	latest2, v2 := key(""), key("2")
	if got := e.takeRetired(); !slices.Equal(got, []string{latest1}) {
		t.Fatalf("after code update retired %v", got)
	}
	e.do(acctA, "DELETE", "/2015-03-31/functions/fn?Qualifier=1", nil)
	if got := e.takeRetired(); !slices.Equal(got, []string{v1}) {
		t.Fatalf("after version delete retired %v", got)
	}
	e.do(acctA, "GET", "/2015-03-31/functions/fn", nil)
	if got := e.takeRetired(); len(got) != 0 {
		t.Fatalf("a read retired %v", got)
	}
	e.do(acctA, "DELETE", "/2015-03-31/functions/fn", nil)
	got := e.takeRetired()
	slices.Sort(got)
	want := []string{latest2, v2}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("after delete retired %v, want %v", got, want)
	}
}

func TestCodeGarbageCollection(t *testing.T) {
	e := newEnv(t, t.TempDir())
	defer e.Close()
	ctx := context.Background()
	shared := createBody(t, "one")
	e.do(acctA, "POST", "/2015-03-31/functions", shared)
	shared["FunctionName"] = "two"
	e.do(acctA, "POST", "/2015-03-31/functions", shared)
	r, _ := e.svc.Resolve(ctx, acctA, "one", "", 0)
	p := e.svc.CodePath(r.Version.CodeSha256Hex)
	if _, err := os.Stat(p); err != nil {
		t.Fatal(err)
	}
	e.do(acctA, "DELETE", "/2015-03-31/functions/one", nil)
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("code still used by 'two' was removed: %v", err)
	}
	e.do(acctA, "PUT", "/2015-03-31/functions/two/code", map[string]any{"ZipFile": pyZip(t, "new")})
	if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("unreferenced code kept: %v", err)
	}
	// A failed create (conflict) leaves no orphan behind.
	dup := createBody(t, "two")
	dup["Code"] = map[string]any{"ZipFile": pyZip(t, "orphan?")}
	e.do(acctA, "POST", "/2015-03-31/functions", dup)
	// SweepCode removes leftovers of a crash between write and apply.
	junk := filepath.Join(e.dir, "code", strings.Repeat("ab", 32)+".zip")
	os.WriteFile(junk, []byte("x"), 0o600)
	os.WriteFile(filepath.Join(e.dir, "code", ".tmp-abc"), []byte("x"), 0o600)
	n, err := e.svc.SweepCode(ctx)
	if err != nil || n != 2 {
		t.Fatalf("SweepCode removed %d: %v", n, err)
	}
	entries, _ := os.ReadDir(filepath.Join(e.dir, "code"))
	if len(entries) != 1 {
		t.Fatalf("code dir holds %d files, want only two's zip", len(entries))
	}
	if e.svc.CodePath("../../etc/passwd") != "" {
		t.Fatal("CodePath accepted a non-digest")
	}
}

func TestAccountsAndKeys(t *testing.T) {
	e := newEnv(t, t.TempDir())
	defer e.Close()
	ctx := context.Background()
	if _, _, err := e.svc.LookupKey(ctx, "AKIANOPE"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("unknown key: %v", err)
	}
	seen := map[string]bool{}
	for range 5 {
		a, err := e.svc.CreateAccount(ctx, false)
		if err != nil {
			t.Fatal(err)
		}
		if seen[a.ID] || seen[a.AccessKeyID] || len(a.ID) != 12 || len(a.AccessKeyID) != 20 || len(a.SecretAccessKey) != 40 || a.Admin {
			t.Fatalf("account %+v", a)
		}
		seen[a.ID], seen[a.AccessKeyID] = true, true
	}
	if len(e.svc.Accounts()) != 5 {
		t.Fatal("Accounts() count")
	}
}

// TestDeterministicRand: with a fixed Rand every id and key is reproducible,
// and colliding draws are retried rather than overwriting an account.
func TestDeterministicRand(t *testing.T) {
	var ids [2][]Account
	for i := range 2 {
		e := newEnvRand(t, t.TempDir(), zeroReader{})
		a, err := e.svc.CreateAccount(context.Background(), true)
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = append(ids[i], a)
		if _, err := e.svc.CreateAccount(context.Background(), false); err == nil {
			t.Fatal("an all-zero Rand produced two distinct accounts")
		}
		e.Close()
	}
	if ids[0][0] != ids[1][0] || ids[0][0].ID != "000000000000" || ids[0][0].AccessKeyID != "AKIAAAAAAAAAAAAAAAAA" {
		t.Fatalf("accounts %+v", ids)
	}
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}
