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

// ConfigFD is a SOCK_SEQPACKET unix socket on which the init receives two
// messages. The first, sent when the init is started, is a Config with only
// the backend-wide fields (RootDir, Hostname, NoFile, ResolvConf): the init
// builds the sandbox's base root from it while it waits in the pool, and
// reports "ready". The second, sent when a sandbox claims the init, is the
// sandbox's Config as JSON with, as SCM_RIGHTS, stdin, stdout, stderr and
// then the FD mounts' descriptors (Mount.FD indexes them).
const ConfigFD = 4

// Limits of the config message.
const (
	maxConfig = 1 << 20
	maxFDs    = 32
)

// ExeFD is the init's own binary (an O_PATH descriptor), through which it
// is exec'd and, with cgo, re-executes itself as the small supervisor.
const ExeFD = 5

// Argv0 is the init's argv[0], so the process list reads well on the host.
const Argv0 = "kiln-sandbox-init"

// StatusFD is the descriptor on which the init reports to the backend:
// "ready" once its base root is built, then "ok <pid> <phase>=<ns>…" (see
// the Phase constants) or "error <errno> <message>", later "exit <code>"
// or "signal <number>" for the runtime's end.
const StatusFD = 3

// In-sandbox identity of the runtime, as on Lambda (sbx_user1051).
const (
	RuntimeUID = 993
	RuntimeGID = 990
)

// Mount is a host directory shown inside the sandbox.
type Mount struct {
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
	if len(c.Argv) == 0 {
		return nil, errors.New("nsinit: config without argv")
	}
	return &c, nil
}

func decodePrep(s string) (*Config, error) {
	var c Config
	if err := json.Unmarshal([]byte(s), &c); err != nil {
		return nil, fmt.Errorf("nsinit: bad prepare message: %w", err)
	}
	if c.RootDir == "" || len(c.Argv) != 0 || len(c.Mounts) != 0 {
		return nil, errors.New("nsinit: prepare message needs a root dir and nothing of a sandbox")
	}
	return &c, nil
}
