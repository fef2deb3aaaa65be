package controlplane

import (
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/kiln-dev/kiln/internal/errdefs"
	"github.com/kiln-dev/kiln/internal/runtimes"
)

// Limits (Lambda's documented numbers).
const (
	MinMemory          = 128
	MaxMemory          = 10240
	DefaultMemory      = 128
	MinTimeout         = 1
	MaxTimeout         = 900
	DefaultTimeout     = 3
	MinEphemeral       = 512
	MaxEphemeral       = 10240
	DefaultEphemeral   = 512
	MaxDescription     = 256
	MaxHandler         = 128
	MaxEnvBytes        = 4096
	MaxTags            = 50
	MaxCodeBody        = 70167211 // a 50 MB zip, base64-encoded in JSON
	MaxOtherBody       = 6291456
	CodeSizeZipped     = 52428800
	CodeSizeUnzipped   = 262144000
	ConcurrentExecs    = 1000
	DefaultListItems   = 50
	MaxListItems       = 10000
	tracingPassThrough = "PassThrough"
	tracingActive      = "Active"
)

const (
	rolePattern    = `arn:(aws[a-zA-Z-]*)?:iam::\d{12}:role/?[a-zA-Z_0-9+=,.@\-_/]+`
	handlerPattern = `[^\s]+`
	envKeyPattern  = `[a-zA-Z]([a-zA-Z0-9_])+`
)

// Compiled once; regexps are safe for concurrent use and never change.
var (
	roleRE   = regexp.MustCompile(`^(?:` + rolePattern + `)$`)
	envKeyRE = regexp.MustCompile(`^(?:` + envKeyPattern + `)$`)
)

// vErrs collects model-constraint violations and reports them the way
// Lambda does: "N validation error(s) detected: …; …" as ValidationException.
type vErrs []string

func (v *vErrs) add(format string, args ...any) { *v = append(*v, fmt.Sprintf(format, args...)) }

func (v *vErrs) null(field string) {
	v.add("Value null at '%s' failed to satisfy constraint: Member must not be null", field)
}

func (v *vErrs) pattern(value, field, pattern string) {
	v.add("Value '%s' at '%s' failed to satisfy constraint: Member must satisfy regular expression pattern: %s", value, field, pattern)
}

func (v *vErrs) maxLen(value, field string, n int) {
	v.add("Value '%s' at '%s' failed to satisfy constraint: Member must have length less than or equal to %d", value, field, n)
}

func (v *vErrs) intRange(value int, field string, lo, hi int) {
	switch {
	case value < lo:
		v.add("Value '%d' at '%s' failed to satisfy constraint: Member must have value greater than or equal to %d", value, field, lo)
	case value > hi:
		v.add("Value '%d' at '%s' failed to satisfy constraint: Member must have value less than or equal to %d", value, field, hi)
	}
}

func (v *vErrs) enum(value, field string, set ...string) {
	for _, s := range set {
		if value == s {
			return
		}
	}
	v.add("Value '%s' at '%s' failed to satisfy constraint: Member must satisfy enum value set: [%s]", value, field, strings.Join(set, ", "))
}

func (v vErrs) err() error {
	switch len(v) {
	case 0:
		return nil
	case 1:
		return errdefs.Validation("1 validation error detected: %s", v[0])
	}
	return errdefs.Validation("%d validation errors detected: %s", len(v), strings.Join(v, "; "))
}

func errFunctionName(ref string) error {
	var v vErrs
	if len(ref) > maxRefLen {
		v.maxLen(ref, "functionName", maxRefLen)
	} else {
		v.pattern(ref, "functionName", functionNamePattern)
	}
	return v.err()
}

// Request shapes. Pointers tell "absent" from "zero".

type environment struct {
	Variables map[string]string `json:"Variables"`
}

type tracingConfig struct {
	Mode *string `json:"Mode"`
}

type ephemeralStorage struct {
	Size *int `json:"Size"`
}

type functionCode struct {
	ZipFile         []byte  `json:"ZipFile"`
	S3Bucket        *string `json:"S3Bucket"`
	S3Key           *string `json:"S3Key"`
	S3ObjectVersion *string `json:"S3ObjectVersion"`
	ImageUri        *string `json:"ImageUri"`
}

type createFunctionInput struct {
	FunctionName     *string           `json:"FunctionName"`
	Runtime          *string           `json:"Runtime"`
	Role             *string           `json:"Role"`
	Handler          *string           `json:"Handler"`
	Description      *string           `json:"Description"`
	Timeout          *int              `json:"Timeout"`
	MemorySize       *int              `json:"MemorySize"`
	Publish          bool              `json:"Publish"`
	Code             *functionCode     `json:"Code"`
	Environment      *environment      `json:"Environment"`
	TracingConfig    *tracingConfig    `json:"TracingConfig"`
	Tags             map[string]string `json:"Tags"`
	Layers           []string          `json:"Layers"`
	PackageType      *string           `json:"PackageType"`
	Architectures    []string          `json:"Architectures"`
	EphemeralStorage *ephemeralStorage `json:"EphemeralStorage"`
	DeadLetterConfig *deadLetterConfig `json:"DeadLetterConfig"`
}

type updateConfigInput struct {
	Runtime          *string           `json:"Runtime"`
	Role             *string           `json:"Role"`
	Handler          *string           `json:"Handler"`
	Description      *string           `json:"Description"`
	Timeout          *int              `json:"Timeout"`
	MemorySize       *int              `json:"MemorySize"`
	Environment      *environment      `json:"Environment"`
	TracingConfig    *tracingConfig    `json:"TracingConfig"`
	Layers           []string          `json:"Layers"`
	EphemeralStorage *ephemeralStorage `json:"EphemeralStorage"`
	RevisionId       *string           `json:"RevisionId"`
	DeadLetterConfig *deadLetterConfig `json:"DeadLetterConfig"`
}

type updateCodeInput struct {
	ZipFile         []byte   `json:"ZipFile"`
	S3Bucket        *string  `json:"S3Bucket"`
	S3Key           *string  `json:"S3Key"`
	S3ObjectVersion *string  `json:"S3ObjectVersion"`
	ImageUri        *string  `json:"ImageUri"`
	Publish         bool     `json:"Publish"`
	DryRun          bool     `json:"DryRun"`
	RevisionId      *string  `json:"RevisionId"`
	Architectures   []string `json:"Architectures"`
}

type publishVersionInput struct {
	CodeSha256  *string `json:"CodeSha256"`
	Description *string `json:"Description"`
	RevisionId  *string `json:"RevisionId"`
}

type routingConfig struct {
	AdditionalVersionWeights map[string]float64 `json:"AdditionalVersionWeights"`
}

type aliasInput struct {
	Name            *string        `json:"Name"`
	FunctionVersion *string        `json:"FunctionVersion"`
	Description     *string        `json:"Description"`
	RoutingConfig   *routingConfig `json:"RoutingConfig"`
	RevisionId      *string        `json:"RevisionId"`
}

// settings are the validated, defaulted configuration fields shared by
// CreateFunction and UpdateFunctionConfiguration.
type settings struct {
	runtime, role, handler, description *string
	memory, timeout, ephemeral          *int
	env                                 *map[string]string
	tracing                             *string
}

// checkSettings validates the configuration fields that are present,
// collecting model violations in v; it returns the first semantic
// (InvalidParameterValue) problem, which Lambda reports only after the model
// checks pass.
func (s *Service) checkSettings(v *vErrs, st settings, env *environment, tracing *tracingConfig, eph *ephemeralStorage, layers []string) (settings, error) {
	if st.role != nil && !roleRE.MatchString(*st.role) {
		v.pattern(*st.role, "role", rolePattern)
	}
	if st.handler != nil {
		h := *st.handler
		switch {
		case len(h) > MaxHandler:
			v.maxLen(h, "handler", MaxHandler)
		case h == "" || strings.ContainsAny(h, " \t\r\n\f\v"):
			v.pattern(h, "handler", handlerPattern)
		}
	}
	if st.description != nil && len(*st.description) > MaxDescription {
		v.maxLen(*st.description, "description", MaxDescription)
	}
	if st.memory != nil {
		v.intRange(*st.memory, "memorySize", MinMemory, MaxMemory)
	}
	if st.timeout != nil {
		v.intRange(*st.timeout, "timeout", MinTimeout, MaxTimeout)
	}
	if eph != nil {
		if eph.Size == nil {
			v.null("ephemeralStorage.size")
		} else {
			v.intRange(*eph.Size, "ephemeralStorage.size", MinEphemeral, MaxEphemeral)
			st.ephemeral = eph.Size
		}
	}
	if tracing != nil && tracing.Mode != nil {
		v.enum(*tracing.Mode, "tracingConfig.mode", tracingActive, tracingPassThrough)
		st.tracing = tracing.Mode
	}
	var envKeys []string
	if env != nil {
		vars := env.Variables
		if vars == nil {
			vars = map[string]string{}
		}
		for k := range vars {
			envKeys = append(envKeys, k)
		}
		sort.Strings(envKeys)
		for _, k := range envKeys {
			if !envKeyRE.MatchString(k) {
				v.add("Value at 'environment.variables' failed to satisfy constraint: Map keys must satisfy constraint: [Member must satisfy regular expression pattern: %s]", envKeyPattern)
				break
			}
		}
		st.env = &vars
	}
	if err := v.err(); err != nil {
		return st, err
	}

	if st.runtime != nil {
		if _, ok := runtimes.Lookup(*st.runtime); !ok {
			return st, errdefs.InvalidParameter("The runtime parameter of %s is not supported by Kiln for creating or updating functions. Use one of the supported runtimes: [%s].", *st.runtime, strings.Join(runtimes.Names(), ", "))
		}
	}
	if len(layers) > 0 {
		return st, errdefs.InvalidParameter("Layers are not supported by Kiln yet; remove the Layers parameter.")
	}
	if st.env != nil {
		var reserved []string
		for _, k := range envKeys {
			if runtimes.IsReservedEnvKey(k) {
				reserved = append(reserved, k)
			}
		}
		if len(reserved) > 0 {
			return st, errdefs.InvalidParameter("Lambda was unable to configure your environment variables because the environment variables you have provided contains reserved keys that are currently not supported for modification. Reserved keys used in this request: %s", strings.Join(reserved, ", "))
		}
		b, _ := json.Marshal(*st.env) // map[string]string always marshals
		if len(b) > MaxEnvBytes {
			return st, errdefs.InvalidParameter("Lambda was unable to configure your environment variables because the environment variables you have provided exceeded the 4KB limit. String measured: %s", b)
		}
	}
	return st, nil
}

func (s *Service) checkArchitectures(v *vErrs, arch []string) error {
	if arch == nil {
		return nil
	}
	if len(arch) != 1 {
		v.add("Value '[%s]' at 'architectures' failed to satisfy constraint: Member must have length less than or equal to 1, Member must have length greater than or equal to 1", strings.Join(arch, ", "))
		return nil
	}
	v.enum(arch[0], "architectures", "x86_64", "arm64")
	if len(*v) == 0 && arch[0] != s.hostArch {
		return errdefs.InvalidParameter("Architecture %s is not supported on this Kiln host, which runs %s functions only.", arch[0], s.hostArch)
	}
	return nil
}

func checkTags(tags map[string]string) error {
	if len(tags) > MaxTags {
		return errdefs.InvalidParameter("Number of tags exceeds resource tag limit of %d.", MaxTags)
	}
	for k, val := range tags {
		if k == "" || len(k) > 128 || len(val) > 256 {
			return errdefs.InvalidParameter("Tag keys must be 1-128 characters and values at most 256 characters.")
		}
		if strings.HasPrefix(strings.ToLower(k), "aws:") {
			return errdefs.InvalidParameter("Tag keys beginning with 'aws:' are reserved for AWS use.")
		}
	}
	return nil
}

func checkS3Code(bucket, key, version, image *string) error {
	switch {
	case image != nil && *image != "":
		return errdefs.InvalidParameter("Container images are not supported by Kiln; upload a .zip file archive (ZipFile).")
	case bucket != nil || key != nil || version != nil:
		return errdefs.InvalidParameter("Kiln has no S3; upload the .zip file archive inline as ZipFile.")
	}
	return nil
}

// parseMaxItems reads ?MaxItems (1-10000, default 50).
func parseMaxItems(raw string) (int, error) {
	if raw == "" {
		return DefaultListItems, nil
	}
	n, err := strconv.Atoi(raw)
	if err != nil {
		return 0, errdefs.InvalidParameter("MaxItems must be an integer.")
	}
	var v vErrs
	v.intRange(n, "maxItems", 1, MaxListItems)
	if err := v.err(); err != nil {
		return 0, err
	}
	return n, nil
}

func checkQualifierParam(q string) error {
	if q == "" || isQualifier(q) {
		return nil
	}
	var v vErrs
	if len(q) > maxQualLen {
		v.maxLen(q, "qualifier", maxQualLen)
	} else {
		v.pattern(q, "qualifier", qualifierPattern)
	}
	return v.err()
}

// checkWeights validates RoutingConfig.AdditionalVersionWeights against the model.
func checkWeights(v *vErrs, w map[string]float64) {
	for k, x := range w {
		if !isVersionNumber(k) {
			v.add("Value '%s' at 'routingConfig.additionalVersionWeights' failed to satisfy constraint: Map keys must satisfy constraint: [Member must have length less than or equal to 1024, Member must have length greater than or equal to 1, Member must satisfy regular expression pattern: [0-9]+]", formatWeights(w))
			return
		}
		if x < 0 || x > 1 || math.IsNaN(x) {
			v.add("Value '%s' at 'routingConfig.additionalVersionWeights' failed to satisfy constraint: Map value must satisfy constraint: [Member must have value less than or equal to 1.0, Member must have value greater than or equal to 0.0]", formatWeights(w))
			return
		}
	}
}

func formatWeights(w map[string]float64) string {
	keys := make([]string, 0, len(w))
	for k := range w {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + strconv.FormatFloat(w[k], 'g', -1, 64)
	}
	return "{" + strings.Join(parts, ", ") + "}"
}
