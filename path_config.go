package jwtrotor

import (
	"context"
	"fmt"
	"maps"
	"net"
	"net/url"
	"slices"
	"strings"
	"unicode"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
)

const (
	defaultJWKSMaxAgeSeconds = int64(15 * 60)
	minJWKSMaxAgeSeconds     = int64(1)
	maxJWKSMaxAgeSeconds     = int64(24 * 3600)
)

func pathConfig(b *backend) *framework.Path {
	return &framework.Path{
		Pattern: "config",
		DisplayAttrs: &framework.DisplayAttributes{
			OperationPrefix: operationPrefix,
		},
		Fields: map[string]*framework.FieldSchema{
			"issuer": {
				Type:        framework.TypeString,
				Description: "URL that is the iss claim of every token and the issuer of the discovery document, normally <VAULT_ADDR>/v1/<mount>. Signing is refused until it is set.",
			},
			"jwks_max_age": {
				Type:        framework.TypeDurationSecond,
				Default:     durationDefault(defaultJWKSMaxAgeSeconds),
				Description: "Upper bound of the JWKS Cache-Control max-age, 1s to 24h. Every ring's publish_lead must be at least twice this.",
			},
			"verifiers": {
				Type:        framework.TypeCommaStringSlice,
				Description: "Ids of the declared verifiers, which fetch the JWKS with ?verifier=<id>.",
			},
			"verifier_cidrs": {
				Type:        framework.TypeCommaStringSlice,
				Description: "Address ranges (CIDR) whose JWKS fetchers count as declared verifiers.",
			},
			"publishers_allow_ambient_credentials": {
				Type:        framework.TypeBool,
				Default:     false,
				Description: "Whether publishers without credentials of their own may act with the plugin process's (its environment, the instance's cloud role), which are Vault's. Off by default; only a writer of config can turn it on.",
			},
		},
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.ReadOperation: op(b.pathConfigRead, "read", "configuration", "Read the mount's issuer, JWKS caching and declared verifiers.", map[string]*framework.FieldSchema{
				"issuer":                               {Type: framework.TypeString, Description: "The iss of every token (\"\" until set).", Required: true},
				"jwks_max_age":                         {Type: framework.TypeDurationSecond, Description: "Upper bound of the JWKS max-age (seconds).", Required: true},
				"verifiers":                            {Type: framework.TypeCommaStringSlice, Description: "Ids of the declared verifiers.", Required: true},
				"verifier_cidrs":                       {Type: framework.TypeCommaStringSlice, Description: "Address ranges of declared verifiers.", Required: true},
				"publishers_allow_ambient_credentials": {Type: framework.TypeBool, Description: "Whether publishers may act with the plugin process's credentials.", Required: true},
			}),
			logical.UpdateOperation: writeOp(b.pathConfigWrite, "configure", "", "Set the issuer, JWKS caching and declared verifiers.", nil),
		},
		HelpSynopsis:    pathConfigHelpSyn,
		HelpDescription: pathConfigHelpDesc,
	}
}

const operationPrefix = "jwt-rotor"

func configData(c *configEntry) map[string]any {
	return map[string]any{
		"issuer":         c.Issuer,
		"jwks_max_age":   c.JWKSMaxAge,
		"verifiers":      c.Verifiers,
		"verifier_cidrs": c.VerifierCIDRs,

		"publishers_allow_ambient_credentials": c.PublishersAllowAmbientCredentials,
	}
}

func (b *backend) pathConfigRead(ctx context.Context, req *logical.Request, _ *framework.FieldData) (*logical.Response, error) {
	snap, err := b.load(ctx, req.Storage)
	if err != nil {
		return nil, err
	}
	return &logical.Response{Data: configData(snap.config)}, nil
}

func (b *backend) pathConfigWrite(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	b.writeLock.Lock()
	defer b.writeLock.Unlock()
	snap, err := b.load(ctx, req.Storage)
	if err != nil {
		return nil, err
	}
	c := *snap.config
	c.Version = schemaVersion
	if v, ok := d.GetOk("issuer"); ok {
		iss, err := checkIssuer(v.(string))
		if err != nil {
			return respond(err)
		}
		if iss != c.Issuer {
			if err := checkProfiles(snap.publishers, snap.rings, iss, b.clock.read().Schedule, "issuer"); err != nil {
				return respond(err)
			}
		}
		c.Issuer = iss
	}
	if v, ok := d.GetOk("jwks_max_age"); ok {
		c.JWKSMaxAge = int64(v.(int))
	}
	if c.JWKSMaxAge < minJWKSMaxAgeSeconds || c.JWKSMaxAge > maxJWKSMaxAgeSeconds {
		return respond(refuse("jwks_max_age", "%ds is outside 1s to 24h; verifiers need a positive max-age and a day is the longest any ring's lead should wait on", c.JWKSMaxAge))
	}
	if v, ok := d.GetOk("verifiers"); ok {
		ids := dedupe(v.([]string))
		for _, id := range ids {
			if id == "" || len(id) > 128 || strings.ContainsAny(id, " \t\r\n&?#/") {
				return respond(refuse("verifiers", "%q is not a usable id; use up to 128 characters without spaces or any of &?#/ (it goes into a URL query)", id))
			}
		}
		c.Verifiers = ids
	}
	if v, ok := d.GetOk("verifier_cidrs"); ok {
		cidrs := dedupe(v.([]string))
		for _, s := range cidrs {
			if _, _, err := net.ParseCIDR(s); err != nil {
				return respond(refuse("verifier_cidrs", "%q is not a CIDR range; write it like 10.0.0.0/8 or 2001:db8::/32", s))
			}
		}
		c.VerifierCIDRs = cidrs
	}
	if v, ok := d.GetOk("publishers_allow_ambient_credentials"); ok {
		c.PublishersAllowAmbientCredentials = v.(bool)
	}
	if !c.PublishersAllowAmbientCredentials {
		if ambient := namesWhere(snap.publishers, (*publisherEntry).ambient); len(ambient) > 0 {
			return respond(refuse("publishers_allow_ambient_credentials", "publisher(s) %s have no credentials of their own and rely on it; give them credentials (or delete them) first", strings.Join(ambient, ", ")))
		}
	}
	// A shorter max-age is always safe; a longer one must leave every ring's
	// lead at least two max-ages, or verifiers could miss a new key.
	var broken []string
	for _, name := range slices.Sorted(maps.Keys(snap.rings)) {
		r := snap.rings[name]
		if r.DeletedAt == 0 && r.PublishLead < 2*c.JWKSMaxAge {
			broken = append(broken, fmt.Sprintf("%s (publish_lead %ds)", name, r.PublishLead))
		}
	}
	if len(broken) > 0 {
		return respond(refuse("jwks_max_age", "%ds needs every ring's publish_lead to be at least %ds (2 x jwks_max_age), and these are shorter: %s; lower jwks_max_age to at most half the shortest lead, or raise those rings' publish_lead first",
			c.JWKSMaxAge, 2*c.JWKSMaxAge, strings.Join(broken, ", ")))
	}
	if err := putJSON(ctx, req.Storage, configPath, &c); err != nil {
		return nil, err
	}
	b.cacheConfig(&c)
	return nil, nil
}

// checkIssuer accepts an absolute http(s) URL without query or fragment and
// without a trailing slash, stored exactly as written so it reads back the same.
func checkIssuer(s string) (string, error) {
	if s == "" {
		return "", refuse("issuer", "empty; give the URL verifiers see, such as https://vault.example.com/v1/jwt (the issuer cannot be cleared: every token of the mount names it)")
	}
	if strings.IndexFunc(s, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0 {
		return "", refuse("issuer", "%q contains white space or control characters; verifiers compare iss exactly, so give a plain URL", s)
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return "", refuse("issuer", "%q is not an absolute http(s) URL; use the URL verifiers will see, such as https://vault.example.com/v1/jwt", s)
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return "", refuse("issuer", "%q has a query, fragment or user info; OpenID issuers may not, so remove it", s)
	}
	if strings.HasSuffix(s, "/") {
		return "", refuse("issuer", "%q ends with a slash; remove it (verifiers compare iss exactly and append /.well-known/openid-configuration themselves)", s)
	}
	return s, nil
}

func dedupe(in []string) []string {
	seen := map[string]bool{}
	out := []string{}
	for _, s := range in {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

const pathConfigHelpSyn = `Configure the issuer and JWKS caching of this mount.`

const pathConfigHelpDesc = `
issuer is the iss claim of every token and the issuer of the discovery
document; verifiers compare it exactly. Set it to the URL they reach this mount
at, normally <VAULT_ADDR>/v1/<mount>. Signing is refused until it is set.

jwks_max_age bounds the Cache-Control max-age of the JWKS. Each ring's
publish_lead must be at least twice it, so a verifier that honours the header
always holds a new key before it signs.

verifiers and verifier_cidrs declare which JWKS fetchers are verifiers that
matter, for the stale-verifier report.

publishers_allow_ambient_credentials (default false) lets publishers without
credentials of their own act with the plugin process's: its environment and
the instance's cloud role, which are Vault's. Whoever may write
publishers/<name> could otherwise borrow Vault's identity, so only a writer
of config can allow it; it cannot be turned off while a publisher relies on it.
`
