package hostile

import (
	"encoding/base64"
	"encoding/hex"
	"os"
	"strconv"
	"strings"
)

func decodeSha(b64 string) (string, error) {
	b, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

// hostProcs lists host pids whose command line contains s.
func hostProcs(s string) []int {
	ents, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err == nil && strings.Contains(string(b), s) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// runtimeUIDs maps a function name to the host uids its runtimes run as,
// found through their environments (AWS_LAMBDA_FUNCTION_NAME).
func runtimeUIDs(function string) map[int]bool {
	uids := map[int]bool{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		env, err := os.ReadFile("/proc/" + e.Name() + "/environ")
		if err != nil || !strings.Contains(string(env), "\x00AWS_LAMBDA_FUNCTION_NAME="+function+"\x00") && !strings.HasPrefix(string(env), "AWS_LAMBDA_FUNCTION_NAME="+function+"\x00") {
			continue
		}
		st, err := os.ReadFile("/proc/" + e.Name() + "/status")
		if err != nil {
			continue
		}
		for l := range strings.Lines(string(st)) {
			if f := strings.Fields(l); len(f) > 1 && f[0] == "Uid:" {
				if u, err := strconv.Atoi(f[1]); err == nil {
					uids[u] = true
				}
			}
		}
	}
	return uids
}
