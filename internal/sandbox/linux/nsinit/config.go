package nsinit

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
)

// EnvMarker names the environment variable that, with Argv0, makes a Kiln
// process the init. Its value is EnvValue.
const (
	EnvMarker = "_KILN_SANDBOX_INIT"
	EnvValue  = "1"
)

// ConfigFD is a SOCK_SEQPACKET unix socket on which the init receives one
// message: its Config as JSON with, as SCM_RIGHTS, stdin, stdout, stderr
// and then the FD mounts' descriptors (Mount.FD indexes them).
const ConfigFD = 4

// Limits of the config message.
const (
	maxConfig = 1 << 20
	maxFDs    = 32
)

// Argv0 is the init's argv[0], so the process list reads well on the host.
const Argv0 = "kiln-sandbox-init"

// StatusFD is the descriptor on which the init reports to the backend:
// first "ok <pid>" or "error <message>", later "exit <code>" or
// "signal <number>" for the runtime's end.
const StatusFD = 3

// In-sandbox identity of the runtime, as on Lambda (sbx_user1051).
const (
	RuntimeUID = 993
	RuntimeGID = 990
)

// Mount is a host directory shown read-only inside the sandbox.
type Mount struct {
	Source string `json:"source,omitempty"` // a host path the init binds itself
	// FD is a detached, already read-only mount (open_tree) the backend
	// made and handed over; the init attaches it at Target.
	// In the message, FD is an index into the descriptors sent with it.
	FD     int    `json:"fd,omitempty"`
	Target string `json:"target"`
	IsDir  bool   `json:"dir,omitempty"` // for FD mounts
}

// Config is what the backend hands the init.
type Config struct {
	Argv     []string `json:"argv"`
	Env      []string `json:"env"`
	Dir      string   `json:"dir"`
	Mounts   []Mount  `json:"mounts"`
	RootDir  string   `json:"root_dir"`  // host directory the new root is mounted on (inside the init's own mount namespace)
	TmpBytes int64    `json:"tmp_bytes"` // size of /tmp
	Hostname string   `json:"hostname"`
	NoFile   uint64   `json:"nofile"`
	// ResolvConf is written to /etc/resolv.conf.
	ResolvConf string `json:"resolv_conf"`
}

// IsInit reports whether this process was started as a sandbox init.
func IsInit() bool {
	return os.Getenv(EnvMarker) == EnvValue && len(os.Args) > 0 && os.Args[0] == Argv0
}

// Encode returns the config message's body.
func Encode(c *Config) ([]byte, error) {
	b, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("nsinit: %w", err)
	}
	if len(b) > maxConfig {
		return nil, fmt.Errorf("nsinit: config of %d bytes exceeds %d", len(b), maxConfig)
	}
	return b, nil
}

// MaxFDs bounds the descriptors sent with a config (stdio included).
const MaxFDs = maxFDs

func decode(s string) (*Config, error) {
	var c Config
	if err := json.Unmarshal([]byte(s), &c); err != nil {
		return nil, fmt.Errorf("nsinit: bad config: %w", err)
	}
	if len(c.Argv) == 0 || c.RootDir == "" {
		return nil, errors.New("nsinit: config without argv or root dir")
	}
	return &c, nil
}
