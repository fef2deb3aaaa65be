package controlplane

import "strings"

// Patterns as AWS prints them in ValidationException messages.
const (
	functionNamePattern = `(arn:(aws[a-zA-Z-]*)?:lambda:)?([a-z]{2}(-gov)?-[a-z]+-\d{1}:)?(\d{12}:)?(function:)?([a-zA-Z0-9-_]+)(:(\$LATEST|[a-zA-Z0-9-_]+))?`
	qualifierPattern    = `(|[a-zA-Z0-9$_-]+)`
	aliasNamePattern    = `(?!^[0-9]+$)([a-zA-Z0-9-_]+)`
	aliasVersionPattern = `(\$LATEST|[0-9]+)`

	maxNameLen    = 64
	maxRefLen     = 170
	maxQualLen    = 128
	latestVersion = "$LATEST"
)

// funcRef is a parsed FunctionName: a name, name:qualifier, full ARN or
// partial ARN. Fields are substrings of the input (no allocation).
type funcRef struct {
	region, account, name, qualifier string
}

// parseFunctionRef follows AWS's FunctionName pattern left to right the way
// the regular expression's optional groups would match (each optional group
// is taken when it can be). It reports false when the input does not match.
func parseFunctionRef(s string) (funcRef, bool) {
	var r funcRef
	if s == "" || len(s) > maxRefLen {
		return r, false
	}
	var tok [8]string
	n := 0
	for {
		i := strings.IndexByte(s, ':')
		if i < 0 {
			tok[n] = s
			n++
			break
		}
		if n == len(tok)-1 {
			return r, false
		}
		tok[n] = s[:i]
		n++
		s = s[i+1:]
	}
	i := 0
	if tok[0] == "arn" {
		if n < 4 || !isPartition(tok[1]) || tok[2] != "lambda" {
			return r, false
		}
		i = 3
	}
	if i+1 < n && isRegion(tok[i]) {
		r.region = tok[i]
		i++
	}
	if i+1 < n && isAccountID(tok[i]) {
		r.account = tok[i]
		i++
	}
	if i+1 < n && tok[i] == "function" {
		i++
	}
	if i >= n || !isName(tok[i]) {
		return r, false
	}
	r.name = tok[i]
	i++
	if i < n {
		if !isQualifier(tok[i]) {
			return r, false
		}
		r.qualifier = tok[i]
		i++
	}
	if i != n {
		return r, false
	}
	return r, true
}

func isPartition(s string) bool {
	if !strings.HasPrefix(s, "aws") {
		return s == ""
	}
	for _, c := range s[3:] {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '-') {
			return false
		}
	}
	return true
}

// isRegion matches [a-z]{2}(-gov)?-[a-z]+-\d.
func isRegion(s string) bool {
	if len(s) < 6 || !isLower(s[0]) || !isLower(s[1]) || s[2] != '-' {
		return false
	}
	s = s[3:]
	s = strings.TrimPrefix(s, "gov-")
	j := 0
	for j < len(s) && isLower(s[j]) {
		j++
	}
	return j > 0 && len(s) == j+2 && s[j] == '-' && isDigit(s[j+1])
}

func isAccountID(s string) bool {
	if len(s) != 12 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return false
		}
	}
	return true
}

// isName matches [a-zA-Z0-9-_]+ up to 64 characters.
func isName(s string) bool {
	if s == "" || len(s) > maxNameLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isNameByte(s[i]) {
			return false
		}
	}
	return true
}

// isQualifier matches \$LATEST|[a-zA-Z0-9-_]+ up to 128 characters.
func isQualifier(s string) bool {
	if s == latestVersion {
		return true
	}
	if s == "" || len(s) > maxQualLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isNameByte(s[i]) {
			return false
		}
	}
	return true
}

// isVersionNumber matches [0-9]+ without leading zeros (Lambda's versions).
func isVersionNumber(s string) bool {
	if s == "" || len(s) > 10 || (s[0] == '0') {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return false
		}
	}
	return true
}

// isAliasName matches (?!^[0-9]+$)([a-zA-Z0-9-_]+), 1-128 characters.
func isAliasName(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	digits := true
	for i := 0; i < len(s); i++ {
		if !isNameByte(s[i]) {
			return false
		}
		digits = digits && isDigit(s[i])
	}
	return !digits
}

func isNameByte(c byte) bool {
	return isLower(c) || c >= 'A' && c <= 'Z' || isDigit(c) || c == '-' || c == '_'
}

func isLower(c byte) bool { return c >= 'a' && c <= 'z' }
func isDigit(c byte) bool { return c >= '0' && c <= '9' }
