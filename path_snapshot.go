package jwtrotor

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
)

func pathSnapshot(b *backend) []*framework.Path {
	return []*framework.Path{{
		Pattern: "snapshot/" + framework.GenericNameRegex("name") + "$",
		DisplayAttrs: &framework.DisplayAttributes{
			OperationPrefix: operationPrefix,
			OperationSuffix: "snapshot",
		},
		Fields: map[string]*framework.FieldSchema{
			"name": ringNameField,
			"profile": {
				Type:        framework.TypeString,
				Default:     profileGeneric,
				Query:       true,
				Description: "The verifier the snapshot is for, as for publishers: generic, aws, gcp or azure. A set the profile cannot carry is refused, naming the ring and the key.",
			},
		},
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.ReadOperation: op(b.pathSnapshotRead, "read", "snapshot", "The ring's keys for a verifier that never fetches: every key of a live token and every key that signs before valid_until.", snapshotAnswer),
		},
		HelpSynopsis:    pathSnapshotHelpSyn,
		HelpDescription: pathSnapshotHelpDesc,
	}}
}

var snapshotAnswer = map[string]*framework.FieldSchema{
	"jwks":        {Type: framework.TypeMap, Description: "The JWKS: every key that verifies a live token of the ring, and every key that signs before valid_until (retiring keys included).", Required: true},
	"valid_until": {Type: framework.TypeInt64, Description: "Unix seconds: the first instant a key outside the set may sign, by the schedule as it stands.", Required: true},
	"keys":        {Type: framework.TypeSlice, Description: "Per key: kid, alg, thumbprint, activate_at, retire_at and remove_at (0 while not scheduled), trusted (a key of an adopted issuer, which never signs).", Required: true},
	"etag":        {Type: framework.TypeString, Description: "A hash of the sorted kids and thumbprints of the set: the same set always has the same etag.", Required: true},
	"pem":         {Type: framework.TypeString, Description: "The same public keys as PEM PUBLIC KEY blocks, in the order of jwks.", Required: true},
}

func (b *backend) pathSnapshotRead(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	name := d.Get("name").(string)
	profile := d.Get("profile").(string)
	if err := checkProfileName(profile); err != nil {
		return respond(err)
	}
	snap, err := b.load(ctx, req.Storage)
	if err != nil {
		return nil, err
	}
	r := snap.rings[name]
	if r == nil || r.DeletedAt != 0 {
		return nil, nil
	}
	s, err := snapshotOf(r, b.now())
	if err != nil {
		return nil, err
	}
	if why := profileViolation(profiles[profile], s.jwks); why != "" {
		return respond(refuse("profile", "ring %q's snapshot holds %s, which profile=%s (%s) does not take; read it without a profile, or use another ring", name, why, profile, profiles[profile].source))
	}
	var jwks map[string]any
	if err := json.Unmarshal(s.jwks, &jwks); err != nil {
		return nil, fmt.Errorf("snapshot of ring %q: %w", name, err)
	}
	keys := make([]map[string]any, 0, len(s.keys))
	for _, k := range s.keys {
		keys = append(keys, map[string]any{"kid": k.KID, "alg": k.Alg, "thumbprint": k.Thumbprint,
			"activate_at": k.ActivateAt, "retire_at": k.RetireAt, "remove_at": k.RemoveAt, "trusted": k.Trusted})
	}
	return &logical.Response{Data: map[string]any{
		"jwks": jwks, "valid_until": s.validUntil, "keys": keys, "etag": s.etag, "pem": s.pem,
	}}, nil
}

const pathSnapshotHelpSyn = `The ring's keys for a verifier that never fetches the JWKS.`

const pathSnapshotHelpDesc = `
Some verifiers are handed a key set once and keep it: an uploaded JWKS
(GCP's jwksJson, Databricks' jwks_json), keys pinned in a service, an
appliance configured by hand. vault read snapshot/<ring> answers what such a
verifier needs: jwks (every key of a live token and every key the schedule
signs with before valid_until), valid_until (the first instant a key outside
the set may sign), keys (each key's activate_at, retire_at and remove_at),
etag (a hash of the set's kids and thumbprints) and pem (the same keys as
PEM). Hand the verifier a new snapshot before valid_until. A forced
rotation, or the revocation of the active key, moves the schedule: read the
snapshot again after one. Reading a snapshot changes nothing.

profile=aws, gcp or azure refuses a set the named verifier cannot take.
`
