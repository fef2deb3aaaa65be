package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

const defaultEndpoint = "http://127.0.0.1:9001"

// command is one verb's flag set plus the text of its --help.
type command struct {
	name     string // "deploy", "account create"
	synopsis string // after "Usage: kiln "
	about    string
	fs       *flag.FlagSet
	common   commonFlags
	// commonNames are the flags listed under "Common flags" in the help.
	commonNames map[string]bool
	// minArgs and maxArgs bound the positional arguments; maxArgs < 0 means
	// no bound.
	minArgs, maxArgs int
}

// newCommand makes a command with the common flags registered. A command that
// uses --profile for something else passes withProfile=false.
func newCommand(name, synopsis, about string, minArgs, maxArgs int, withProfile bool) *command {
	fs := flag.NewFlagSet("kiln "+name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	c := &command{
		name: name, synopsis: synopsis, about: about, fs: fs,
		minArgs: minArgs, maxArgs: maxArgs,
		commonNames: map[string]bool{},
	}
	c.common.register(fs, withProfile)
	// Only the common flags exist yet; the verb adds its own after this.
	fs.VisitAll(func(f *flag.Flag) { c.commonNames[f.Name] = true })
	return c
}

// parse parses args with flags allowed before, between and after the
// positional arguments (a lone "--" ends the flags). It returns the
// positional arguments, or done=true with the exit code when the command must
// stop here: 0 after printing --help, 2 after a usage error.
func (c *command) parse(e *env, args []string) (pos []string, code int, done bool) {
	pos, err := parseInterspersed(c.fs, args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		_, _ = io.WriteString(e.stdout, c.help())
		return nil, exitOK, true
	case err != nil:
		return nil, c.usageError(e, "%v", err), true
	case len(pos) < c.minArgs:
		return nil, c.usageError(e, "missing arguments"), true
	case c.maxArgs >= 0 && len(pos) > c.maxArgs:
		return nil, c.usageError(e, "unexpected argument %q", pos[c.maxArgs]), true
	}
	return pos, 0, false
}

// usageError prints msg and a pointer to --help, and returns exitUsage.
func (c *command) usageError(e *env, format string, args ...any) int {
	fmt.Fprintf(e.stderr, "kiln %s: %s\nUsage: kiln %s\nRun 'kiln %s --help' for details.\n",
		c.name, fmt.Sprintf(format, args...), c.synopsis, c.name)
	return exitUsage
}

// parseInterspersed is flag.FlagSet.Parse that does not stop at the first
// positional argument, so `kiln invoke fn --tail` and `kiln invoke --tail fn`
// mean the same.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		consumed := len(args) - len(rest)
		if consumed > 0 && args[consumed-1] == "--" {
			// The flag package stopped at the terminator: all the rest is
			// positional, even words that start with "-".
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// help renders the command's --help text; the flag lists come from the flag
// set itself so they cannot drift from what parse accepts.
func (c *command) help() string {
	var b strings.Builder
	fmt.Fprintf(&b, "Usage: kiln %s\n\n%s\n", c.synopsis, strings.TrimRight(c.about, "\n"))
	var own, common []*flag.Flag
	c.fs.VisitAll(func(f *flag.Flag) {
		if c.commonNames[f.Name] {
			common = append(common, f)
		} else {
			own = append(own, f)
		}
	})
	if len(own) > 0 {
		b.WriteString("\nFlags:\n")
		writeFlags(&b, own)
	}
	if len(common) > 0 {
		b.WriteString("\nCommon flags:\n")
		writeFlags(&b, common)
	}
	return b.String()
}

func writeFlags(b *strings.Builder, flags []*flag.Flag) {
	sort.Slice(flags, func(i, j int) bool { return flags[i].Name < flags[j].Name })
	for _, f := range flags {
		valueName, usage := flag.UnquoteUsage(f)
		line := "  --" + f.Name
		if valueName != "" {
			line += " " + strings.ToUpper(valueName)
		}
		fmt.Fprintf(b, "%s\n        %s\n", line, usage)
	}
}

// commonFlags are accepted by every verb.
type commonFlags struct {
	endpoint string
	region   string
	profile  string
}

const (
	endpointUsage = "Kiln endpoint `url` (default $KILN_ENDPOINT, else " + defaultEndpoint + ")"
	regionUsage   = "`region` to sign for (default $AWS_REGION, $AWS_DEFAULT_REGION, the profile's, else us-east-1)"
	profileUsage  = "credentials `profile` (default $AWS_PROFILE, else default); looked up in the AWS files, then ./.kiln"
)

func (c *commonFlags) register(fs *flag.FlagSet, withProfile bool) {
	fs.StringVar(&c.endpoint, "endpoint-url", "", endpointUsage)
	fs.StringVar(&c.region, "region", "", regionUsage)
	if withProfile {
		fs.StringVar(&c.profile, "profile", "", profileUsage)
	}
}

// commonFlagsHelp is the common flags' block for the top-level usage.
func commonFlagsHelp(withProfile bool) string {
	fs := flag.NewFlagSet("", flag.ContinueOnError)
	var c commonFlags
	c.register(fs, withProfile)
	var flags []*flag.Flag
	fs.VisitAll(func(f *flag.Flag) { flags = append(flags, f) })
	var b strings.Builder
	writeFlags(&b, flags)
	return b.String()
}

// endpointURL is the endpoint the user chose: the flag, else $KILN_ENDPOINT,
// else the local default.
func (c *commonFlags) endpointURL() string {
	if c.endpoint != "" {
		return c.endpoint
	}
	if v := os.Getenv("KILN_ENDPOINT"); v != "" {
		return v
	}
	return defaultEndpoint
}

// envVars is a repeatable --env K=V flag.
type envVars map[string]string

func (v envVars) String() string {
	keys := make([]string, 0, len(v))
	for k := range v {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, k+"="+v[k])
	}
	return strings.Join(parts, ",")
}

func (v envVars) Set(s string) error {
	k, val, err := parseEnvAssignment(s)
	if err != nil {
		return err
	}
	v[k] = val
	return nil
}

// parseEnvAssignment splits "K=V"; V may itself contain "=" and may be empty.
func parseEnvAssignment(s string) (key, value string, err error) {
	k, val, ok := strings.Cut(s, "=")
	if !ok {
		return "", "", fmt.Errorf("%q is not KEY=VALUE", s)
	}
	if k == "" {
		return "", "", fmt.Errorf("%q has an empty KEY", s)
	}
	if strings.ContainsAny(k, " \t\r\n") {
		return "", "", fmt.Errorf("%q: KEY must not contain white space", s)
	}
	return k, val, nil
}
