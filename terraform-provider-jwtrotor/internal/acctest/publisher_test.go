package acctest

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/terraform-plugin-testing/config"
	"github.com/hashicorp/terraform-plugin-testing/helper/resource"
	"github.com/hashicorp/terraform-plugin-testing/plancheck"
	"github.com/hashicorp/terraform-plugin-testing/terraform"

	"github.com/jwt-rotor/vault-plugin-jwt-rotor/testserver"
)

// publisherSecrets are the credentials of TestAccPublisherLifecycle, none
// of which may appear in a plan or a state.
type publisherSecrets struct {
	accessKey, wrongSecret, rightSecret, sessionToken, davUser, davPassword string
}

func (s publisherSecrets) all() []string {
	return []string{s.accessKey, s.wrongSecret, s.rightSecret, s.sessionToken, s.davUser, s.davPassword}
}

// publisherConfig is an s3 publisher of the store, which the data source
// reads, and a webdav publisher whose server is not there (its
// configuration is what is tested); creds are the s3 publisher's
// credential lines. The credentials come from ephemeral variables, as
// they would from a secret store: a literal would be in the plan's copy of
// the configuration, which is the practitioner's own text.
func publisherConfig(mount string, s3 *testserver.S3Server, prefix, creds string) string {
	return providerBlock(mount) + fmt.Sprintf(`
variable "access_key_id" {
  type      = string
  ephemeral = true
}

variable "secret_access_key" {
  type      = string
  ephemeral = true
}

variable "session_token" {
  type      = string
  ephemeral = true
  default   = null
}

variable "dav_username" {
  type      = string
  ephemeral = true
}

variable "dav_password" {
  type      = string
  ephemeral = true
}

resource "jwtrotor_key_ring" "main" {
  name             = "main"
  algorithm        = "ES256"
  rotation_period  = "1h"
  publish_lead     = "30m"
  verification_ttl = "2h"
}

resource "jwtrotor_publisher" "s3" {
  name              = "s3"
  type              = "s3"
  bucket            = %q
  region            = %q
  endpoint          = %q
  path_style        = true
  prefix            = %q
  public_url        = %q
  access_key_id     = var.access_key_id
  secret_access_key = var.secret_access_key
  %s
  depends_on = [jwtrotor_key_ring.main]
}

resource "jwtrotor_publisher" "dav" {
  name                   = "dav"
  type                   = "webdav"
  url                    = "https://keys.example.com/dav/"
  jwks_path              = "keys/jwks.json"
  profile                = "gcp"
  username               = var.dav_username
  password               = var.dav_password
  credentials_wo_version = 1
}

data "jwtrotor_publisher" "s3" {
  name       = jwtrotor_publisher.s3.name
  depends_on = [jwtrotor_publisher.s3]
}
`, s3.Bucket, s3.Region, s3.Endpoint, prefix, s3.PublicURL(prefix), creds)
}

// vars are the variables of publisherConfig: the s3 secret, and the
// session token unless it is "".
func (s publisherSecrets) vars(secret, sessionToken string) config.Variables {
	v := config.Variables{
		"access_key_id": config.StringVariable(s.accessKey), "secret_access_key": config.StringVariable(secret),
		"dav_username": config.StringVariable(s.davUser), "dav_password": config.StringVariable(s.davPassword),
	}
	if sessionToken != "" {
		v["session_token"] = config.StringVariable(sessionToken)
	}
	return v
}

// A publisher's life in Terraform, against a real S3 store: created with a
// wrong secret, which the store denies (the report, and the data source,
// say denied); its non-secret fields changed in place while a credential
// changed without credentials_wo_version is not sent; rotated by
// credentials_wo_version to the right secret, after which the copy is
// current; imported; destroyed. No plan and no state file holds any credential.
func TestAccPublisherLifecycle(t *testing.T) {
	need(t)
	s3 := testserver.S3(t)
	mount := newMount(t, "publisher")
	sec := publisherSecrets{accessKey: s3.AccessKey, wrongSecret: "not-the-secret-of-this-store-42", rightSecret: s3.SecretKey,
		sessionToken: "session-token-never-stored-7", davUser: "dav-user-never-stored", davPassword: "dav-password-never-stored-9"}
	// Terraform's working directories (plans and states) are kept here, so
	// that every step can search them.
	workDirs := t.TempDir()
	t.Setenv("TF_ACC_TEMP_DIR", workDirs)
	noSecrets := noSecretsInPlan{secrets: sec.all()}
	const addr, dav, data = "jwtrotor_publisher.s3", "jwtrotor_publisher.dav", "data.jwtrotor_publisher.s3"
	withToken := "session_token          = var.session_token\n  credentials_wo_version = 1"
	// versitygw refuses a session token it did not issue (400, rejected),
	// so the store is given one only where it must never be sent.

	resource.Test(t, resource.TestCase{
		ProtoV6ProviderFactories: providers,
		CheckDestroy: func(*terraform.State) error {
			for _, p := range []string{"publishers/s3", "publishers/dav"} {
				if vaultRead(t, mount+"/"+p) != nil {
					return fmt.Errorf("%s still readable after destroy", p)
				}
			}
			return nil
		},
		Steps: []resource.TestStep{
			{
				Config:           publisherConfig(mount, s3, "a/", "credentials_wo_version = 1"),
				ConfigVariables:  sec.vars(sec.wrongSecret, ""),
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{noSecrets}},
				Check: resource.ComposeAggregateTestCheckFunc(
					resource.TestCheckResourceAttr(addr, "id", "s3"),
					resource.TestCheckResourceAttr(addr, "endpoint", s3.Endpoint),
					resource.TestCheckResourceAttr(addr, "path_style", "true"),
					resource.TestCheckResourceAttr(addr, "jwks_path", ".well-known/jwks.json"),
					resource.TestCheckResourceAttr(addr, "ring", ""),
					resource.TestCheckResourceAttr(addr, "required", "false"),
					resource.TestCheckResourceAttr(addr, "credentials_wo_version", "1"),
					resource.TestCheckResourceAttr(addr, "ambient_credentials", "false"),
					resource.TestCheckNoResourceAttr(addr, "url"),
					resource.TestCheckNoResourceAttr(addr, "secret_access_key"),
					resource.TestCheckResourceAttr(dav, "url", "https://keys.example.com/dav/"),
					resource.TestCheckResourceAttr(dav, "jwks_path", "keys/jwks.json"),
					resource.TestCheckResourceAttr(dav, "profile", "gcp"),
					resource.TestCheckResourceAttr(addr, "profile", "generic"),
					resource.TestCheckNoResourceAttr(dav, "bucket"),
					resource.TestCheckNoResourceAttr(dav, "path_style"),
					resource.TestCheckNoResourceAttr(dav, "password"),
					checkCredentialsSet(t, dav, "password", "username"),
					checkCredentialsSet(t, addr, "access_key_id", "secret_access_key"),
					checkPath(t, mount+"/publishers/s3", map[string]any{
						"type": "s3", "bucket": s3.Bucket, "region": s3.Region, "endpoint": s3.Endpoint, "path_style": true,
						"prefix": "a/", "public_url": s3.PublicURL("a/"), "jwks_path": ".well-known/jwks.json",
						"access_key_id_set": true, "secret_access_key_set": true, "session_token_set": false,
					}),
					checkPath(t, mount+"/publishers/dav", map[string]any{"type": "webdav", "url": "https://keys.example.com/dav/",
						"username_set": true, "password_set": true, "profile": "gcp"}),
					// The store denies the wrong secret.
					waitPublisher(t, mount, "s3", "failing with reason denied", func(e map[string]any) bool {
						return e["state"] == "failing" && e["last_error_reason"] == "denied"
					}),
					noSecretsInFiles(workDirs, sec.all()),
				),
			},
			{
				// The non-secret fields change in place. The credentials
				// change too (the right secret, and a session token), but
				// credentials_wo_version does not: none is sent, so no
				// session token is stored. The data source, read after the
				// change, reports the denial.
				Config:          publisherConfig(mount, s3, "b/", withToken),
				ConfigVariables: sec.vars(sec.rightSecret, sec.sessionToken),
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					noSecrets,
					plancheck.ExpectResourceAction(addr, plancheck.ResourceActionUpdate),
					plancheck.ExpectResourceAction(dav, plancheck.ResourceActionNoop),
					expectChange{addr: addr, attr: "prefix", before: "a/", after: "b/"},
				}},
				Check: resource.ComposeAggregateTestCheckFunc(
					resource.TestCheckResourceAttr(data, "state", "failing"),
					resource.TestCheckResourceAttr(data, "last_error_reason", "denied"),
					resource.TestCheckResourceAttr(data, "last_success", "0"),
					resource.TestCheckResourceAttr(data, "type", "s3"),
					resource.TestCheckResourceAttr(data, "prefix", "b/"),
					checkCredentialsSet(t, addr, "access_key_id", "secret_access_key"),
					checkPath(t, mount+"/publishers/s3", map[string]any{"prefix": "b/", "public_url": s3.PublicURL("b/"), "session_token_set": false}),
					noSecretsInFiles(workDirs, sec.all()),
				),
			},
			{
				// credentials_wo_version changes: the new secret is sent,
				// and the copy becomes current.
				Config:          publisherConfig(mount, s3, "b/", "credentials_wo_version = 2"),
				ConfigVariables: sec.vars(sec.rightSecret, ""),
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{
					noSecrets,
					plancheck.ExpectResourceAction(addr, plancheck.ResourceActionUpdate),
					expectChange{addr: addr, attr: "credentials_wo_version", before: 1, after: 2},
				}},
				Check: resource.ComposeAggregateTestCheckFunc(
					checkCredentialsSet(t, addr, "access_key_id", "secret_access_key"),
					waitPublisher(t, mount, "s3", "current with the right secret", func(e map[string]any) bool {
						return e["state"] == "current"
					}),
					func(*terraform.State) error {
						b, err := os.ReadFile(filepath.Join(s3.Root, s3.Bucket, "b", ".well-known", "jwks.json"))
						if err != nil {
							return fmt.Errorf("the copy is not in the store: %v", err)
						}
						got, err := kidsIn(b)
						if want := jwksKIDs(t, mount, "jwks"); err != nil || !slices.Equal(got, want) {
							return fmt.Errorf("the copy holds %v (%v), the mount serves %v", got, err, want)
						}
						return nil
					},
					noSecretsInFiles(workDirs, sec.all()),
				),
			},
			{
				// The data source reports the copy as current.
				Config:           publisherConfig(mount, s3, "b/", "credentials_wo_version = 2"),
				ConfigVariables:  sec.vars(sec.rightSecret, ""),
				ConfigPlanChecks: resource.ConfigPlanChecks{PreApply: []plancheck.PlanCheck{noSecrets, plancheck.ExpectEmptyPlan()}},
				Check: resource.ComposeAggregateTestCheckFunc(
					resource.TestCheckResourceAttr(data, "state", "current"),
					resource.TestCheckResourceAttr(data, "behind_seconds", "0"),
					resource.TestCheckResourceAttr(data, "acknowledged_via", "public_url"),
					resource.TestCheckResourceAttr(data, "prefix", "b/"),
					func(s *terraform.State) error {
						a, err := attrs(s, data)
						if err != nil {
							return err
						}
						if atoi(t, a["last_success"]) <= 0 {
							return fmt.Errorf("last_success %s after a success", a["last_success"])
						}
						want := jwksKIDs(t, mount, "jwks")
						if atoi(t, a["kids.#"]) != len(want) || len(want) == 0 {
							return fmt.Errorf("the data source has %s kids, the mount serves %v", a["kids.#"], want)
						}
						for i, kid := range want {
							if a[fmt.Sprintf("kids.%d", i)] != kid {
								return fmt.Errorf("kids.%d = %s, want %s", i, a[fmt.Sprintf("kids.%d", i)], kid)
							}
						}
						return nil
					},
					noSecretsInFiles(workDirs, sec.all()),
				),
			},
			{
				ResourceName:            addr,
				ImportState:             true,
				ImportStateId:           "s3",
				ConfigVariables:         sec.vars(sec.rightSecret, ""),
				ImportStateVerify:       true,
				ImportStateVerifyIgnore: []string{"credentials_wo_version"},
			},
			{
				ResourceName:            dav,
				ImportState:             true,
				ImportStateId:           "dav",
				ConfigVariables:         sec.vars(sec.rightSecret, ""),
				ImportStateVerify:       true,
				ImportStateVerifyIgnore: []string{"credentials_wo_version"},
			},
		},
	})
}

// waitPublisher waits (at most 30 s) until the publisher's entry in the
// verifier report satisfies cond.
func waitPublisher(t *testing.T, mount, name, what string, cond func(map[string]any) bool) func(*terraform.State) error {
	return func(*terraform.State) error {
		var last map[string]any
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
			pubs, _ := vaultRead(t, mount+"/verifiers")["publishers"].(map[string]any)
			last, _ = pubs[name].(map[string]any)
			if last != nil && cond(last) {
				return nil
			}
		}
		return fmt.Errorf("publisher %s not %s within 30s; the report says %v", name, what, last)
	}
}

// checkCredentialsSet checks which credentials the state says are stored.
func checkCredentialsSet(t *testing.T, addr string, want ...string) func(*terraform.State) error {
	return func(s *terraform.State) error {
		a, err := attrs(s, addr)
		if err != nil {
			return err
		}
		var got []string
		for i := 0; i < atoi(t, a["credentials_set.#"]); i++ {
			got = append(got, a[fmt.Sprintf("credentials_set.%d", i)])
		}
		sort.Strings(want)
		if !slices.Equal(got, want) {
			return fmt.Errorf("%s: credentials_set %v, want %v", addr, got, want)
		}
		return nil
	}
}

// noSecretsInPlan fails when the plan, as terraform show -json renders it
// (planned values, prior state, changes and configuration), holds any of
// the secrets.
type noSecretsInPlan struct{ secrets []string }

func (c noSecretsInPlan) CheckPlan(_ context.Context, req plancheck.CheckPlanRequest, resp *plancheck.CheckPlanResponse) {
	b, err := json.Marshal(req.Plan)
	if err != nil {
		resp.Error = err
		return
	}
	if !bytes.Contains(b, []byte(`"jwtrotor_publisher"`)) {
		resp.Error = fmt.Errorf("the plan has no jwtrotor_publisher: nothing was searched")
		return
	}
	for _, s := range c.secrets {
		if bytes.Contains(b, []byte(s)) {
			resp.Error = fmt.Errorf("the plan JSON holds the credential %q", s)
			return
		}
	}
}

// noSecretsInFiles searches every state file (terraform.tfstate and its
// backups) and saved plan (a zip archive, searched entry by entry but for
// its copy of the configuration) under dir, Terraform's working
// directories, for the secrets. The configuration, which holds them, is
// not searched.
func noSecretsInFiles(dir string, secrets []string) func(*terraform.State) error {
	return func(*terraform.State) error {
		states, plans := 0, 0
		err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			var contents [][]byte
			switch name := d.Name(); {
			case strings.Contains(name, ".tfstate"):
				b, err := os.ReadFile(p)
				if err != nil {
					return err
				}
				states++
				contents = append(contents, b)
			case name == "tfplan":
				zr, err := zip.OpenReader(p)
				if err != nil {
					return fmt.Errorf("%s: %v", p, err)
				}
				defer zr.Close()
				plans++
				for _, f := range zr.File {
					if strings.HasPrefix(f.Name, "tfconfig/") {
						continue // the configuration, which holds them
					}
					rc, err := f.Open()
					if err != nil {
						return err
					}
					b, err := io.ReadAll(rc)
					rc.Close()
					if err != nil {
						return err
					}
					contents = append(contents, b)
				}
			}
			for _, b := range contents {
				for _, s := range secrets {
					if bytes.Contains(b, []byte(s)) {
						return fmt.Errorf("%s holds the credential %q", p, s)
					}
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		if states == 0 || plans == 0 {
			return fmt.Errorf("%d state files and %d plans under %s: nothing was searched", states, plans, dir)
		}
		return nil
	}
}
