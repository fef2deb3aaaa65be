package codepkg

import (
	"strings"

	"github.com/kiln-dev/kiln/internal/errdefs"
)

// Lambda's deployment package quotas.
const (
	defaultMaxZipped   = 52428800  // 50 MB
	defaultMaxUnzipped = 262144000 // 250 MB
	defaultMaxFiles    = 20000
)

// Limits bound a deployment package. Zero fields take Lambda's defaults.
type Limits struct {
	MaxZipped, MaxUnzipped int64
	MaxFiles               int
}

// DefaultLimits are Lambda's limits. The package reads the constants above,
// never this variable, so changing it affects no one else.
var DefaultLimits = Limits{MaxZipped: defaultMaxZipped, MaxUnzipped: defaultMaxUnzipped, MaxFiles: defaultMaxFiles}

func (l Limits) withDefaults() Limits {
	if l.MaxZipped <= 0 {
		l.MaxZipped = defaultMaxZipped
	}
	if l.MaxUnzipped <= 0 {
		l.MaxUnzipped = defaultMaxUnzipped
	}
	if l.MaxFiles <= 0 {
		l.MaxFiles = defaultMaxFiles
	}
	return l
}

func errUnreadable() error {
	return errdefs.InvalidParameter("Could not unzip uploaded file. Please check your file, then try to upload again.")
}

func errZippedTooLarge(max int64) error {
	return errdefs.RequestTooLarge("Zipped size must be smaller than %d bytes", max)
}

func errUnzippedTooLarge(max int64) error {
	return errdefs.InvalidParameter("Unzipped size must be smaller than %d bytes", max)
}

// errUnsafe reports an entry Kiln refuses to unpack. name is quoted short and
// sanitised: it comes from the uploader and ends up in API replies and logs.
func errUnsafe(reason, name string) error {
	if name == "" {
		return errdefs.InvalidZipFile("Could not unzip uploaded file: %s", reason)
	}
	return errdefs.InvalidZipFile("Could not unzip uploaded file: %s: '%s'", reason, sanitizeName(name))
}

const maxEchoedName = 64

func sanitizeName(s string) string {
	var b strings.Builder
	for i := 0; i < len(s) && b.Len() < maxEchoedName; i++ {
		c := s[i]
		if c < 0x20 || c > 0x7e || c == '\'' {
			c = '?'
		}
		b.WriteByte(c)
	}
	if len(s) > maxEchoedName {
		b.WriteString("...")
	}
	return b.String()
}
