package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
)

// pluginRSS returns the resident set size in KiB of every running plugin
// process (one process serves every mount of the plugin).
func pluginRSS() (int, error) {
	entries, err := filepath.Glob("/proc/[0-9]*/cmdline")
	if err != nil {
		return 0, err
	}
	total := 0
	for _, e := range entries {
		cmd, err := os.ReadFile(e)
		if err != nil || !strings.Contains(string(cmd), "vault-plugin-jwt-rotor") || strings.Contains(string(cmd), "go-build") {
			continue
		}
		status, err := os.ReadFile(filepath.Join(filepath.Dir(e), "status"))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(status), "\n") {
			if strings.HasPrefix(line, "VmRSS:") {
				kb, _ := strconv.Atoi(strings.Fields(line)[1])
				total += kb
			}
		}
	}
	if total == 0 {
		return 0, fmt.Errorf("no plugin process found")
	}
	return total, nil
}

// memory measures the plugin's RSS with 1,000 rings and 10,000 tracked
// verifiers. The mount-wide JWKS bound (50 KiB) allows a few dozen rings per
// mount, so the rings are spread over mounts of the same plugin process.
func memory() {
	base, err := pluginRSS()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	// The version make dev registered and mounted at jwt/.
	var jwt struct {
		PluginVersion string `json:"plugin_version"`
	}
	if err := json.Unmarshal(must("GET", "sys/mounts/jwt", nil), &jwt); err != nil || jwt.PluginVersion == "" {
		fmt.Fprintln(os.Stderr, "no plugin version on sys/mounts/jwt:", err)
		os.Exit(1)
	}
	const mounts, perMount = 25, 40
	var wg sync.WaitGroup
	for i := 0; i < mounts; i++ {
		path := fmt.Sprintf("mem%02d", i)
		must("POST", "sys/mounts/"+path, map[string]any{"type": "vault-plugin-jwt-rotor", "config": map[string]any{"plugin_version": jwt.PluginVersion}})
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < perMount; j++ {
				must("POST", fmt.Sprintf("%s/keys/r%02d", path, j), map[string]any{"algorithm": "EdDSA"})
			}
		}()
	}
	wg.Wait()
	rings, err := pluginRSS()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	sem := make(chan struct{}, 16)
	for i := 0; i < 10000; i++ {
		sem <- struct{}{}
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			code, _, _, err := call("GET", fmt.Sprintf("%s/jwks?verifier=v%05d", *mount, i), "", nil, nil)
			if err != nil || code != 200 {
				fmt.Fprintln(os.Stderr, "jwks fetch failed:", code, err)
				os.Exit(1)
			}
		}(i)
	}
	wg.Wait()
	tracked, err := pluginRSS()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("plugin RSS: %d KiB at start, %d KiB with %d rings in %d mounts, %d KiB with 10,000 tracked verifiers as well\n",
		base, rings, mounts*perMount, mounts, tracked)
}
