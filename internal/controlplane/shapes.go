package controlplane

import (
	"sort"
	"time"
)

// Reply shapes, as the Lambda REST-JSON API puts them on the wire.

type functionConfiguration struct {
	FunctionName     string                `json:"FunctionName"`
	FunctionArn      string                `json:"FunctionArn"`
	Runtime          string                `json:"Runtime,omitempty"`
	Role             string                `json:"Role"`
	Handler          string                `json:"Handler,omitempty"`
	CodeSize         int64                 `json:"CodeSize"`
	Description      string                `json:"Description"`
	Timeout          int                   `json:"Timeout"`
	MemorySize       int                   `json:"MemorySize"`
	LastModified     string                `json:"LastModified"`
	CodeSha256       string                `json:"CodeSha256"`
	Version          string                `json:"Version"`
	Environment      *environmentResponse  `json:"Environment,omitempty"`
	TracingConfig    tracingConfigResponse `json:"TracingConfig"`
	RevisionId       string                `json:"RevisionId"`
	State            string                `json:"State"`
	LastUpdateStatus string                `json:"LastUpdateStatus"`
	PackageType      string                `json:"PackageType"`
	Architectures    []string              `json:"Architectures"`
	EphemeralStorage ephemeralResponse     `json:"EphemeralStorage"`
	LoggingConfig    loggingConfig         `json:"LoggingConfig"`
	SnapStart        snapStartResponse     `json:"SnapStart"`
	DeadLetterConfig *deadLetterConfig     `json:"DeadLetterConfig,omitempty"`
}

type environmentResponse struct {
	Variables map[string]string `json:"Variables"`
}

type tracingConfigResponse struct {
	Mode string `json:"Mode"`
}

type ephemeralResponse struct {
	Size int `json:"Size"`
}

type loggingConfig struct {
	LogFormat string `json:"LogFormat"`
	LogGroup  string `json:"LogGroup"`
}

type snapStartResponse struct {
	ApplyOn            string `json:"ApplyOn"`
	OptimizationStatus string `json:"OptimizationStatus"`
}

type getFunctionOutput struct {
	Configuration functionConfiguration `json:"Configuration"`
	Code          functionCodeLocation  `json:"Code"`
	Tags          map[string]string     `json:"Tags,omitempty"`
	Concurrency   *functionConcurrency  `json:"Concurrency,omitempty"`
}

type functionCodeLocation struct {
	RepositoryType string `json:"RepositoryType"`
	Location       string `json:"Location"`
}

type listFunctionsOutput struct {
	Functions  []functionConfiguration `json:"Functions"`
	NextMarker string                  `json:"NextMarker,omitempty"`
}

type listVersionsOutput struct {
	Versions   []functionConfiguration `json:"Versions"`
	NextMarker string                  `json:"NextMarker,omitempty"`
}

type aliasConfiguration struct {
	AliasArn        string         `json:"AliasArn"`
	Name            string         `json:"Name"`
	FunctionVersion string         `json:"FunctionVersion"`
	Description     string         `json:"Description"`
	RoutingConfig   *routingConfig `json:"RoutingConfig,omitempty"`
	RevisionId      string         `json:"RevisionId"`
}

type listAliasesOutput struct {
	Aliases    []aliasConfiguration `json:"Aliases"`
	NextMarker string               `json:"NextMarker,omitempty"`
}

type accountLimit struct {
	CodeSizeUnzipped               int64 `json:"CodeSizeUnzipped"`
	CodeSizeZipped                 int64 `json:"CodeSizeZipped"`
	ConcurrentExecutions           int   `json:"ConcurrentExecutions"`
	TotalCodeSize                  int64 `json:"TotalCodeSize"`
	UnreservedConcurrentExecutions int   `json:"UnreservedConcurrentExecutions"`
}

type accountUsage struct {
	FunctionCount int64 `json:"FunctionCount"`
	TotalCodeSize int64 `json:"TotalCodeSize"`
}

type accountSettingsOutput struct {
	AccountLimit accountLimit `json:"AccountLimit"`
	AccountUsage accountUsage `json:"AccountUsage"`
}

type createAccountInput struct {
	Admin bool `json:"Admin"`
}

type createAccountOutput struct {
	AccountId       string `json:"AccountId"`
	AccessKeyId     string `json:"AccessKeyId"`
	SecretAccessKey string `json:"SecretAccessKey"`
}

type accountSummary struct {
	AccountId   string `json:"AccountId"`
	AccessKeyId string `json:"AccessKeyId"`
	Admin       bool   `json:"Admin"`
}

type listAccountsOutput struct {
	Accounts []accountSummary `json:"Accounts"`
}

// lastModified renders Lambda's FunctionConfiguration timestamp format.
func lastModified(ms int64) string {
	return time.UnixMilli(ms).UTC().Format("2006-01-02T15:04:05.000-0700")
}

// configuration renders v; arn is the FunctionArn to show (Lambda shows the
// unqualified ARN for $LATEST unless a qualifier was asked for).
func configuration(v *verState, arn string) functionConfiguration {
	c := functionConfiguration{
		FunctionName:     v.FunctionName,
		FunctionArn:      arn,
		Runtime:          v.Runtime,
		Role:             v.Role,
		Handler:          v.Handler,
		CodeSize:         v.CodeSize,
		Description:      v.Description,
		Timeout:          v.Timeout,
		MemorySize:       v.MemorySize,
		LastModified:     lastModified(v.LastModified),
		CodeSha256:       v.CodeSha256,
		Version:          v.Version,
		TracingConfig:    tracingConfigResponse{Mode: v.TracingMode},
		RevisionId:       v.RevisionId,
		State:            stateActive,
		LastUpdateStatus: "Successful",
		PackageType:      "Zip",
		Architectures:    v.Architectures,
		EphemeralStorage: ephemeralResponse{Size: v.EphemeralStorage},
		LoggingConfig:    loggingConfig{LogFormat: "Text", LogGroup: "/aws/lambda/" + v.FunctionName},
		SnapStart:        snapStartResponse{ApplyOn: "None", OptimizationStatus: "Off"},
		DeadLetterConfig: deadLetterOut(v.DeadLetterArn),
	}
	if len(v.Env) > 0 {
		c.Environment = &environmentResponse{Variables: v.Env}
	}
	return c
}

func aliasConfig(a *aliasState) aliasConfiguration {
	out := aliasConfiguration{
		AliasArn:        a.arn,
		Name:            a.Name,
		FunctionVersion: a.FunctionVersion,
		Description:     a.Description,
		RevisionId:      a.RevisionId,
	}
	if len(a.Weights) > 0 {
		out.RoutingConfig = &routingConfig{AdditionalVersionWeights: a.Weights}
	}
	return out
}

// sortedVersions lists fn's published versions in numeric order.
func sortedVersions(fn *fnState) []*verState {
	out := make([]*verState, 0, len(fn.Versions))
	for _, v := range fn.Versions {
		out = append(out, v)
	}
	sort.Slice(out, func(i, j int) bool { return versionOrder(out[i].Version) < versionOrder(out[j].Version) })
	return out
}

// versionOrder sorts $LATEST (0) before numbered versions.
func versionOrder(v string) int {
	n := 0
	for i := 0; i < len(v); i++ {
		if !isDigit(v[i]) {
			return 0
		}
		n = n*10 + int(v[i]-'0')
	}
	return n
}
