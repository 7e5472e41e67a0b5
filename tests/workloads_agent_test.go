package tests

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jwt-rotor/vault-plugin-jwt-rotor/testserver"
)

// agentTemplate is one Vault Agent template of the workload test and what
// every token it renders must be.
type agentTemplate struct {
	name string
	// contents is the template text; MOUNT stands for the mount path.
	contents string
	aud      []string
	life     int64
}

// agentRender is one token the test saw in a rendered file.
type agentRender struct {
	token    string
	kid      string
	iat, exp int64
	seen     time.Time // the first poll that saw it
}

type agentWatch struct {
	tmpl    agentTemplate
	path    string
	renders []agentRender
}

func (w *agentWatch) rotations() int {
	n := 0
	for i := 1; i < len(w.renders); i++ {
		if w.renders[i].kid != w.renders[i-1].kid {
			n++
		}
	}
	return n
}

// TestWorkloadAgent runs a real `vault agent` (the bin/vault the suite
// uses) with AppRole auto-auth beside a "workload": templates render a
// token into files, as an application would read it, while the ring rotates
// every 15s. The templates are the read of the issue,
//
//	{{ with secret "<mount>/token/wl" }}{{ .Data.token }}{{ end }}
//
// a read with query parameters (of a second role), and a sign with parameters (Agent
// turns a secret call with key=value arguments into a write). Agent's
// static_secret_render_interval (5s) is below the tokens' ttl (20s, 25s)
// minus the verifiers' leeway, the rule docs/workloads.md gives operators.
//
// The test polls the files (every 250ms) through at least three rotations
// of each file's tokens. Each token it sees is checked as soon as it is seen
// by go-jose against a JWKS fetched then (with the algorithm list fixed to
// the ring's) and by Node's jose (createRemoteJWKSet, caching the set for
// jwks_max_age); its claims must be the role's (issuer, audience from the
// template, lifetime, the Agent's AppRole entity as subject), and its iat
// must fall in its kid's active window. At every poll the token in each
// file must be unexpired and no older than its ttl, and each file must be
// replaced before the token it held expires. Takes about a minute.
func TestWorkloadAgent(t *testing.T) {
	t.Parallel()
	const (
		maxAge         = 5
		period         = 15
		lead           = 10
		verifyTTL      = 90
		ttl            = 20
		maxTTL         = 30
		renderInterval = 5 // seconds: static_secret_render_interval
		alg            = "ES256"
		wantRotations  = 3
		pollEvery      = 250 * time.Millisecond
		// A stalled run fails by count: the reads and writes of one
		// rotation period render about period/renderInterval times.
		maxRenders = 40
	)
	m := newMount(t, "agent", map[string]any{"jwks_max_age": maxAge})
	createRing(t, m, "wl", map[string]any{"algorithm": alg, "rotation_period": period, "publish_lead": lead, "verification_ttl": verifyTTL})
	// Two roles on one ring: Agent keys a read by its path without the
	// query, so templates reading one path share one token whatever their
	// parameters; the template with parameters reads its own role.
	for _, role := range []string{"wl", "wlq"} {
		createRole(t, m, role, map[string]any{
			"key": "wl", "audiences": []string{apiAudience, "api2"}, "ttl": ttl, "max_ttl": maxTTL, "allow_token_read": true,
		})
	}
	templates := []agentTemplate{
		{"token", `{{ with secret "MOUNT/token/wl" }}{{ .Data.token }}{{ end }}`, []string{apiAudience, "api2"}, ttl},
		{"token-query", `{{ with secret "MOUNT/token/wlq?audience=` + url.QueryEscape(apiAudience) + `&ttl=25" }}{{ .Data.token }}{{ end }}`, []string{apiAudience}, 25},
		{"sign", `{{ with secret "MOUNT/sign/wl" "audience=` + apiAudience + `" "ttl=20" }}{{ .Data.token }}{{ end }}`, []string{apiAudience}, 20},
	}
	for _, tmpl := range templates {
		if renderInterval >= tmpl.life-2 {
			t.Fatalf("template %s: render interval %ds is not below its ttl %ds minus 2s of leeway", tmpl.name, renderInterval, tmpl.life)
		}
	}

	// The workload's identity: an AppRole whose policy may read token/wl
	// and sign on wl, and nothing else.
	authPath := "approle-" + m.path
	env.root.mustWrite(t, "sys/auth/"+authPath, map[string]any{"type": "approle"})
	t.Cleanup(func() { env.root.do(t, http.MethodDelete, "sys/auth/"+authPath, nil) })
	polName := "agent-" + m.path
	env.root.mustDo(t, http.MethodPut, "sys/policies/acl/"+polName, map[string]any{"policy": fmt.Sprintf(`
path "%[1]s/token/wl" { capabilities = ["read"] }
path "%[1]s/token/wlq" { capabilities = ["read"] }
path "%[1]s/sign/wl" { capabilities = ["update"] }
`, m.path)})
	env.root.mustWrite(t, "auth/"+authPath+"/role/workload", map[string]any{"token_policies": []string{polName}, "token_ttl": "10m", "token_max_ttl": "1h"})
	roleID := str(t, env.root.mustRead(t, "auth/"+authPath+"/role/workload/role-id").Data, "role_id")
	secretID := str(t, env.root.mustWrite(t, "auth/"+authPath+"/role/workload/secret-id", nil).Data, "secret_id")

	dir := t.TempDir()
	file := func(name string) string { return filepath.Join(dir, name) }
	mustWriteFile(t, file("role-id"), roleID)
	mustWriteFile(t, file("secret-id"), secretID)
	var cfg strings.Builder
	fmt.Fprintf(&cfg, `pid_file = %q
vault {
  address = %q
}
auto_auth {
  method "approle" {
    mount_path = %q
    config = {
      role_id_file_path                   = %q
      secret_id_file_path                 = %q
      remove_secret_id_file_after_reading = false
    }
  }
  sink "file" {
    config = {
      path = %q
    }
  }
}
template_config {
  static_secret_render_interval = "%ds"
  exit_on_retry_failure         = true
}
`, file("agent.pid"), env.root.addr, "auth/"+authPath, file("role-id"), file("secret-id"), file("agent-token"), renderInterval)
	var watches []*agentWatch
	for _, tmpl := range templates {
		src := file(tmpl.name + ".ctmpl")
		mustWriteFile(t, src, strings.ReplaceAll(tmpl.contents, "MOUNT", m.path))
		w := &agentWatch{tmpl: tmpl, path: file(tmpl.name + ".jwt")}
		watches = append(watches, w)
		fmt.Fprintf(&cfg, `template {
  source               = %q
  destination          = %q
  perms                = "0600"
  error_on_missing_key = true
}
`, src, w.path)
	}
	mustWriteFile(t, file("agent.hcl"), cfg.String())

	logPath := file("agent.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bins.Vault, "agent", "-config="+file("agent.hcl"), "-log-level=debug")
	cmd.Dir = dir
	cmd.Env = testserver.Env(dir)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	testserver.SetChildAttrs(cmd)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	var exitErr error
	go func() {
		exitErr = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		testserver.StopProcess(cmd, exited, os.Interrupt, 10*time.Second)
		logFile.Close()
		if t.Failed() {
			tail, _ := os.ReadFile(logPath)
			if len(tail) > 6000 {
				tail = tail[len(tail)-6000:]
			}
			t.Logf("end of the Agent log:\n%s", tail)
		}
	})

	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	node, err := startNodeJose(ctx, verifierConfig{
		jwksURL: env.root.url(m.p("jwks")), issuer: m.issuer, audience: apiAudience, alg: alg, interval: maxAge * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(node.close)

	var (
		failures          []string
		joseChecks        int
		nodeChecks        int
		fileChecks        int
		polls             int
		entity            string
		maxAgeAtReplace   time.Duration
		maxAgeInFile      time.Duration
		firstRenderWaited int
	)
	fail := func(format string, args ...any) {
		if len(failures) < 20 {
			failures = append(failures, fmt.Sprintf(format, args...))
		} else if len(failures) == 20 {
			failures = append(failures, "...")
		}
	}
	done := func() bool {
		for _, w := range watches {
			if w.rotations() < wantRotations {
				return false
			}
		}
		return true
	}
	for !done() {
		select {
		case <-exited:
			t.Fatalf("vault agent exited: %v (%d polls, %d failures so far: %q)", exitErr, polls, len(failures), failures)
		default:
		}
		polls++
		now := time.Now()
		for _, w := range watches {
			raw, err := os.ReadFile(w.path)
			if os.IsNotExist(err) && len(w.renders) == 0 {
				continue
			}
			if err != nil {
				fail("%s: %v", w.tmpl.name, err)
				continue
			}
			tok := strings.TrimSpace(string(raw))
			if n := len(w.renders); n == 0 || w.renders[n-1].token != tok {
				if entity == "" {
					entity = agentEntity(t, file("agent-token"))
				}
				r := agentRender{token: tok, seen: now, kid: tokenKid(tok)}
				jwks := fetchJWKS(t, m, "jwks")
				_, claims, err := verifyWithJose(tok, jwks.Set, alg)
				joseChecks++
				if err != nil {
					fail("%s: render %d: go-jose: %v (file holds %.80q)", w.tmpl.name, n+1, err, tok)
					continue
				}
				r.iat, _ = jsonInt(claims["iat"])
				r.exp, _ = jsonInt(claims["exp"])
				nbf, _ := jsonInt(claims["nbf"])
				switch {
				case claims["iss"] != m.issuer:
					fail("%s: iss %v", w.tmpl.name, claims["iss"])
				case claims["sub"] != entity:
					fail("%s: sub %v, want the Agent's entity %s", w.tmpl.name, claims["sub"], entity)
				case !slices.Equal(audList(claims["aud"]), w.tmpl.aud):
					fail("%s: aud %v, want %v", w.tmpl.name, claims["aud"], w.tmpl.aud)
				case r.exp-r.iat != w.tmpl.life:
					fail("%s: token lives %ds, want %d", w.tmpl.name, r.exp-r.iat, w.tmpl.life)
				case nbf > now.Unix()+1 || r.exp <= now.Unix():
					fail("%s: render %d seen at %d outside nbf %d / exp %d", w.tmpl.name, n+1, now.Unix(), nbf, r.exp)
				}
				if _, err := node.verify(ctx, tok); err != nil {
					fail("%s: render %d: Node jose: %v", w.tmpl.name, n+1, err)
				}
				nodeChecks++
				if n > 0 {
					prev := w.renders[n-1]
					if !now.Before(time.Unix(prev.exp, 0)) {
						fail("%s: render %d replaced the file at %s, after its previous token expired at %d", w.tmpl.name, n+1, now.Format(time.TimeOnly), prev.exp)
					}
					if a := now.Sub(time.Unix(prev.iat, 0)); a > maxAgeAtReplace {
						maxAgeAtReplace = a
					}
				} else if firstRenderWaited == 0 {
					firstRenderWaited = polls
				}
				w.renders = append(w.renders, r)
			}
			if len(w.renders) == 0 {
				continue
			}
			cur := w.renders[len(w.renders)-1]
			age := now.Sub(time.Unix(cur.iat, 0))
			if age > maxAgeInFile {
				maxAgeInFile = age
			}
			if !now.Before(time.Unix(cur.exp, 0)) || age > time.Duration(w.tmpl.life)*time.Second {
				fail("%s: at %s the file holds a token issued at %d, expiring at %d: older than its ttl %ds", w.tmpl.name, now.Format(time.TimeOnly), cur.iat, cur.exp, w.tmpl.life)
			}
			fileChecks++
		}
		if len(failures) > 0 {
			break
		}
		for _, w := range watches {
			if len(w.renders) > maxRenders {
				t.Fatalf("%s: %d renders and only %d rotations: the ring or the Agent is stuck", w.tmpl.name, len(w.renders), w.rotations())
			}
		}
		if polls == 240 && len(watches[0].renders) == 0 {
			t.Fatalf("no file rendered after %d polls", polls)
		}
		time.Sleep(pollEvery)
	}
	if len(failures) > 0 {
		t.Fatalf("%d failures:\n  %s", len(failures), strings.Join(failures, "\n  "))
	}

	// Every kid the files held is a key of the ring, and every token was
	// signed by the key whose active window holds its iat.
	final := readRing(t, m, "wl")
	renders, misplaced := 0, 0
	for _, w := range watches {
		renders += len(w.renders)
		for _, r := range w.renders {
			k, ok := final.byKid(r.kid)
			switch {
			case !ok:
				misplaced++
				t.Errorf("%s: kid %s is not in the ring", w.tmpl.name, r.kid)
			case r.iat < k.ActivateAt-1 || (k.RetireAt != 0 && r.iat > k.RetireAt+1):
				misplaced++
				t.Errorf("%s: token issued at %d by %s, active %d to %d", w.tmpl.name, r.iat, r.kid, k.ActivateAt, k.RetireAt)
			}
		}
	}
	if joseChecks != renders || nodeChecks != renders || fileChecks < renders {
		t.Fatalf("checks: go-jose %d, Node %d, file %d, for %d renders", joseChecks, nodeChecks, fileChecks, renders)
	}
	var per []string
	for _, w := range watches {
		per = append(per, fmt.Sprintf("%s: %d renders, %d rotations", w.tmpl.name, len(w.renders), w.rotations()))
	}
	t.Logf("vault agent, static_secret_render_interval=%ds, ring period %ds: %s; %d tokens checked by go-jose and %d by Node jose, %d file checks in %d polls, %d failed checks, %d tokens not by their window's key; oldest token seen in a file %s, oldest at replacement %s",
		renderInterval, period, strings.Join(per, "; "), joseChecks, nodeChecks, fileChecks, polls, len(failures), misplaced,
		maxAgeInFile.Round(100*time.Millisecond), maxAgeAtReplace.Round(100*time.Millisecond))
}

// agentEntity is the entity of the token the Agent's file sink holds.
func agentEntity(t *testing.T, sink string) string {
	t.Helper()
	tok, err := os.ReadFile(sink)
	if err != nil {
		t.Fatalf("the Agent rendered a template but its sink holds no token: %v", err)
	}
	resp := env.root.mustWrite(t, "auth/token/lookup", map[string]any{"token": strings.TrimSpace(string(tok))})
	id := str(t, resp.Data, "entity_id")
	if id == "" {
		t.Fatal("the Agent's token has no entity")
	}
	return id
}

func mustWriteFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}
