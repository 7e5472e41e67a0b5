package jwtrotor

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/hashicorp/vault/sdk/logical"
)

// Storage layout. Every entry is JSON with a schema version. A ring's index
// entry holds its settings and every key's public half and timestamps, so
// each state change is one Put; private halves live in entries of their own
// (declared seal-wrapped) so no entry approaches the storage size limit.
const (
	configPath    = "config"
	clockPath     = "clock"
	ringPrefix    = "rings/"
	rolePrefix    = "roles/"
	privatePrefix = "private/"
	// historyPath is the mount's record of the keys that left its rings
	// (history.go): public identifiers only.
	historyPath = "history"
	// wrappingPrefix holds the mount's import wrapping key pair (declared
	// seal-wrapped, like private/).
	wrappingPrefix = "wrapping/"
	wrappingPath   = wrappingPrefix + "key"
	// publisherPrefix holds the mount's publishers (publishers.go), their
	// write-only credentials included (declared seal-wrapped).
	publisherPrefix = "publishers/"
)

// schemaVersion is written into every entry. Readers accept every version up
// to it; a version above it was written by a newer plugin and is refused
// rather than half-understood.
//
// Version 2 records each key's overlap (Overlap) and keeps revoked keys as
// tombstones without their public key. Version 1 rings are read with each
// key's overlap taken from its timestamps.
//
// Version 3 adds imported keys (Imported, and a Thumbprint when the kid was
// chosen, their private half stored under the thumbprint), a ring's trusted
// keys (Trusted), the mount's history entry and its wrapping key. A version 2
// plugin would serve a ring without its trusted keys and fail to sign with
// an imported key, so it must refuse these entries: hence the new version.
// Version 1 and 2 entries read as before (no imported or trusted keys).
//
// Version 4 adds publishers (publishers/<name>) and the config's
// publishers_allow_ambient_credentials. A version 3 plugin would not see the
// publishers: it would stop keeping their copies current, so a revoked key
// could stay in a copy verifiers read, and it would not hold a key's
// activation for a required one. It must refuse these entries: hence the new
// version. Version 1 to 3 entries read as before (no publishers, ambient
// credentials not allowed).
const schemaVersion = 4

type configEntry struct {
	Version       int      `json:"version"`
	Issuer        string   `json:"issuer"`
	JWKSMaxAge    int64    `json:"jwks_max_age"`
	Verifiers     []string `json:"verifiers"`
	VerifierCIDRs []string `json:"verifier_cidrs"`
	// PublishersAllowAmbientCredentials lets publishers without credentials
	// of their own act with the plugin process's (version 4 on; absent
	// before, which is false).
	PublishersAllowAmbientCredentials bool `json:"publishers_allow_ambient_credentials"`
}

func defaultConfig() *configEntry {
	return &configEntry{Version: schemaVersion, JWKSMaxAge: defaultJWKSMaxAgeSeconds, Verifiers: []string{}, VerifierCIDRs: []string{}}
}

type ringEntry struct {
	Version         int    `json:"version"`
	Name            string `json:"name"`
	Algorithm       string `json:"algorithm"`
	RSABits         int    `json:"rsa_bits"`
	RotationPeriod  int64  `json:"rotation_period"`
	VerificationTTL int64  `json:"verification_ttl"`
	PublishLead     int64  `json:"publish_lead"`
	// The optional activation gate: a pending key waits, at most
	// MaxActivationDelay, until this share of declared verifiers holds it.
	MinVerifierCoverage float64 `json:"min_verifier_coverage"`
	MaxActivationDelay  int64   `json:"max_activation_delay"`
	CreatedAt           int64   `json:"created_at"`
	DeletedAt           int64   `json:"deleted_at,omitempty"`
	HighWater           int64   `json:"high_water"`
	// LastRemoval is the latest remove or revoke time of keys maintenance
	// has forgotten, so Last-Modified never moves backwards.
	LastRemoval int64        `json:"last_removal,omitempty"`
	Keys        []signingKey `json:"keys"`
	// Trusted are verify-only public keys of an issuer the ring adopted
	// (keys/<name>/trust), published until their expires_at; they never
	// sign.
	Trusted []trustedKey `json:"trusted,omitempty"`
}

func (r *ringEntry) schedule() ringSchedule {
	return ringSchedule{RotationPeriod: r.RotationPeriod, VerificationTTL: r.VerificationTTL, PublishLead: r.PublishLead}
}

func (r *ringEntry) clone() *ringEntry {
	c := *r
	c.Keys = append([]signingKey(nil), r.Keys...)
	c.Trusted = append([]trustedKey(nil), r.Trusted...)
	return &c
}

type roleEntry struct {
	Version         int            `json:"version"`
	Key             string         `json:"key"`
	Audiences       []string       `json:"audiences"`
	TTL             int64          `json:"ttl"`
	MaxTTL          int64          `json:"max_ttl"`
	SubjectTemplate string         `json:"subject_template"`
	AllowedSubjects []string       `json:"allowed_subjects"`
	Claims          map[string]any `json:"claims"`
	AllowedClaims   []string       `json:"allowed_claims"`
	TokenType       string         `json:"token_type"`
	// AllowTokenRead lets a read of token/<role> mint; entries written
	// before the field existed decode to false.
	AllowTokenRead bool `json:"allow_token_read"`
}

type privateEntry struct {
	Version int    `json:"version"`
	KID     string `json:"kid"`
	// Thumbprint is set when the kid is not the key's thumbprint (an
	// imported key's chosen kid); the entry is stored under it.
	Thumbprint string `json:"thumbprint,omitempty"`
	Alg        string `json:"alg"`
	PKCS8      []byte `json:"pkcs8"`
}

// thumbprint is the stored key's RFC 7638 thumbprint.
func (p *privateEntry) thumbprint() string {
	if p.Thumbprint != "" {
		return p.Thumbprint
	}
	return p.KID
}

type clockEntry struct {
	Version   int   `json:"version"`
	HighWater int64 `json:"high_water"`
}

// privatePath is where a key's private half is stored: under its storeID,
// which is its kid unless the kid was chosen at import.
func privatePath(ring, id string) string { return privatePrefix + ring + "/" + id }

// getJSON reads path into out; it returns false when the entry is absent.
func getJSON(ctx context.Context, s logical.Storage, path string, out any) (bool, error) {
	e, err := s.Get(ctx, path)
	if err != nil {
		return false, fmt.Errorf("read %s: %w", path, err)
	}
	if e == nil {
		return false, nil
	}
	if err := e.DecodeJSON(out); err != nil {
		return false, fmt.Errorf("decode %s: %w", path, err)
	}
	return true, nil
}

func putJSON(ctx context.Context, s logical.Storage, path string, v any) error {
	e, err := logical.StorageEntryJSON(path, v)
	if err != nil {
		return fmt.Errorf("encode %s: %w", path, err)
	}
	if err := s.Put(ctx, e); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

func checkVersion(path string, v int) error {
	if v < 1 || v > schemaVersion {
		return fmt.Errorf("%s has schema version %d; this plugin (%s) reads versions 1 to %d, so it was written by a newer plugin: tune the mount back to that plugin's version (vault secrets tune -plugin-version=<version> <mount>) and reload, or restore the snapshot taken before the upgrade (docs/operations.md, Downgrade)", path, v, Version, schemaVersion)
	}
	return nil
}

func readConfig(ctx context.Context, s logical.Storage) (*configEntry, error) {
	c := defaultConfig()
	ok, err := getJSON(ctx, s, configPath, c)
	if err != nil || !ok {
		return defaultConfig(), err
	}
	if err := checkVersion(configPath, c.Version); err != nil {
		return nil, err
	}
	if c.Verifiers == nil {
		c.Verifiers = []string{}
	}
	if c.VerifierCIDRs == nil {
		c.VerifierCIDRs = []string{}
	}
	return c, nil
}

func readRing(ctx context.Context, s logical.Storage, name string) (*ringEntry, error) {
	r := &ringEntry{}
	ok, err := getJSON(ctx, s, ringPrefix+name, r)
	if err != nil || !ok {
		return nil, err
	}
	if err := checkVersion(ringPrefix+name, r.Version); err != nil {
		return nil, err
	}
	if r.Version < 2 {
		// Version 1 set remove_at to retire_at plus the verification_ttl
		// of the time; keys not yet retiring take the ring's.
		for i := range r.Keys {
			if k := &r.Keys[i]; k.Overlap == 0 {
				k.Overlap = r.VerificationTTL
				if k.RetireAt != 0 && k.RemoveAt > k.RetireAt {
					k.Overlap = k.RemoveAt - k.RetireAt
				}
			}
		}
	}
	sortKeys(r.Keys)
	return r, nil
}

// versioned is a stored entry that records its schema version.
type versioned interface{ schema() int }

func (r *roleEntry) schema() int      { return r.Version }
func (p *publisherEntry) schema() int { return p.Version }
func (p *privateEntry) schema() int   { return p.Version }
func (s *publisherState) schema() int { return s.Version }

// readEntry reads path into e and checks its schema version; it returns
// the zero value (nil) when the entry is absent.
func readEntry[E versioned](ctx context.Context, s logical.Storage, path string, e E) (E, error) {
	var none E
	ok, err := getJSON(ctx, s, path, e)
	if err != nil || !ok {
		return none, err
	}
	if err := checkVersion(path, e.schema()); err != nil {
		return none, err
	}
	return e, nil
}

func readRole(ctx context.Context, s logical.Storage, name string) (*roleEntry, error) {
	return readEntry(ctx, s, rolePrefix+name, &roleEntry{})
}

func readPublisher(ctx context.Context, s logical.Storage, name string) (*publisherEntry, error) {
	return readEntry(ctx, s, publisherPrefix+name, &publisherEntry{})
}

func readPrivate(ctx context.Context, s logical.Storage, ring, id string) (*privateEntry, error) {
	return readEntry(ctx, s, privatePath(ring, id), &privateEntry{})
}

// signingKey is one key of a ring. Its four timestamps are the whole of its
// state; operations rewrite them, time passing does the rest.
type signingKey struct {
	KID string `json:"kid"`
	Alg string `json:"alg"`
	// PublicJWK is dropped when the key is revoked: a revoked key is kept
	// as a small tombstone (tombstones.go), so revocations cannot grow the
	// stored ring.
	PublicJWK json.RawMessage `json:"public_jwk,omitempty"`
	// PublishAt is when the key entered the JWKS (its generation time).
	PublishAt int64 `json:"publish_at"`
	// ActivateAt is when it starts signing. Always >= PublishAt+lead unless
	// Forced.
	ActivateAt int64 `json:"activate_at"`
	// RetireAt is its successor's ActivateAt; 0 while it has no successor,
	// so the last key of a ring never stops signing on its own.
	RetireAt int64 `json:"retire_at"`
	// RemoveAt is RetireAt plus Overlap; 0 while RetireAt is 0.
	RemoveAt int64 `json:"remove_at"`
	// Overlap is the verification_ttl the key's tokens were signed under:
	// the longest in force while it could sign. A later, shorter overlap
	// never shortens the publication of a key that already signed.
	Overlap int64 `json:"overlap"`
	// RevokedAt, when set, ends the key at once and for good.
	RevokedAt int64 `json:"revoked_at,omitempty"`
	// Lead is the publish_lead the key was scheduled under. A later change
	// of the ring's lead applies to keys scheduled after it, so settings
	// changes never rewrite existing timestamps.
	Lead int64 `json:"lead"`
	// Forced records that the key activated before a full lead.
	Forced bool `json:"forced,omitempty"`
	// RollbackUsed marks both keys of a rollback, so no key's removal can
	// move more than one rotation period past its original time.
	RollbackUsed bool `json:"rollback_used,omitempty"`
	// GateOrigin is the activation time before the activation gate delayed
	// it (0: never delayed); GateNote says why, for reads.
	GateOrigin int64  `json:"gate_origin,omitempty"`
	GateNote   string `json:"gate_note,omitempty"`
	// HasPrivate says the private half is in storage.
	HasPrivate bool `json:"has_private"`
	// Imported records a key made outside the plugin and imported
	// (keys/<name>/import): verifiers already trusted it, so it signed from
	// its import without a lead here (like Forced, it waives the lead); it
	// is never rolled back to, and its private half is deleted when it
	// retires.
	Imported bool `json:"imported,omitempty"`
	// Thumbprint is the key's RFC 7638 thumbprint when its kid is another
	// (an imported key's chosen kid); empty when the kid is the thumbprint.
	// Tombstones keep it, so a revoked key is known by its key as well.
	Thumbprint string `json:"thumbprint,omitempty"`

	// rsaBits is the RSA size of a planned key, until it is made.
	rsaBits int
}

// thumbprint is the key's RFC 7638 thumbprint.
func (k *signingKey) thumbprint() string {
	if k.Thumbprint != "" {
		return k.Thumbprint
	}
	return k.KID
}

// storeID is where the key's private half is stored and cached.
func (k *signingKey) storeID() string { return k.thumbprint() }

// trustedKey is a verify-only public key of an issuer a ring adopted: it is
// published from AddedAt until ExpiresAt, and never signs. Its JWK was
// rebuilt from the parsed public key, never copied from the request.
type trustedKey struct {
	KID        string          `json:"kid"`
	Alg        string          `json:"alg"`
	Thumbprint string          `json:"thumbprint"`
	PublicJWK  json.RawMessage `json:"public_jwk"`
	AddedAt    int64           `json:"added_at"`
	ExpiresAt  int64           `json:"expires_at"`
}

// published reports whether t belongs in the JWKS at now.
func (t *trustedKey) published(now int64) bool { return t.AddedAt <= now && now < t.ExpiresAt }
