package testserver

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

const (
	// PluginName is the plugin's name in Vault's catalog, its binary's
	// name in a server's plugin directory and the mount type.
	PluginName = "vault-plugin-jwt-rotor"
	// RootToken is the root token of every dev server.
	RootToken = "root"

	pluginModule = "module github.com/jwt-rotor/vault-plugin-jwt-rotor\n"
)

// Binaries are the programs a test server runs, from the repository's bin/.
type Binaries struct {
	Root    string // the repository's root directory
	Vault   string // bin/vault
	Plugin  string // bin/plugins/<PluginName>_<Version>
	Version string // the checkout's version (scripts/version.sh)
}

// FindBinaries returns the Vault and plugin binaries that `make vault
// plugin` builds for the checkout holding the working directory, or an
// error that says how to build them. Version is what scripts/version.sh
// prints: the version make stamps into the plugin and names its file after.
func FindBinaries() (Binaries, error) {
	root, err := repoRoot()
	if err != nil {
		return Binaries{}, err
	}
	out, err := exec.Command(filepath.Join(root, "scripts", "version.sh")).Output()
	if err != nil {
		return Binaries{}, fmt.Errorf("scripts/version.sh: %w", err)
	}
	b := Binaries{Root: root, Version: strings.TrimSpace(string(out))}
	b.Vault = filepath.Join(root, "bin", "vault")
	b.Plugin = filepath.Join(root, "bin", "plugins", PluginName+"_"+b.Version)
	for _, p := range []string{b.Vault, b.Plugin} {
		if !executable(p) {
			return Binaries{}, fmt.Errorf("acceptance tests need %s: run `make test` (or `make vault plugin`) at the repository root first", p)
		}
	}
	return b, nil
}

// WithCrashhook returns b with the plugin built with the crashhook tag
// (make plugin-crashhook), which kills itself at the point
// JWT_ROTOR_CRASH_AT names.
func (b Binaries) WithCrashhook() (Binaries, error) {
	p := filepath.Join(b.Root, "bin", "plugins-crashhook", PluginName)
	if !executable(p) {
		return Binaries{}, errors.New("the crash tests need " + p + ": run `make test` (or `make plugin-crashhook`) at the repository root first")
	}
	b.Plugin = p
	return b, nil
}

func executable(p string) bool {
	info, err := os.Stat(p)
	return err == nil && !info.IsDir() && info.Mode()&0o111 != 0
}

// repoRoot is the nearest directory at or above the working directory that
// holds the plugin's go.mod.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		mod, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.HasPrefix(mod, []byte(pluginModule)) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no directory above the working directory holds the plugin's go.mod")
		}
		dir = parent
	}
}
