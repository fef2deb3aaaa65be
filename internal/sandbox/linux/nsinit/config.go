package nsinit

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
)

// EnvMarker names the environment variable that carries the init's Config
// (JSON); its presence is what makes a Kiln process the init.
const EnvMarker = "_KILN_SANDBOX_INIT"

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
	_, ok := os.LookupEnv(EnvMarker)
	return ok && len(os.Args) > 0 && os.Args[0] == Argv0
}

// Encode returns the environment entry that carries c.
func Encode(c *Config) (string, error) {
	b, err := json.Marshal(c)
	if err != nil {
		return "", fmt.Errorf("nsinit: %w", err)
	}
	return EnvMarker + "=" + string(b), nil
}

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
