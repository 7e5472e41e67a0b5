package jwtrotor

import (
	"context"
	"strings"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
)

// Adopting an existing issuer without a trust cutover (docs/migrating.md):
// wrapping_key gives the public key to wrap its signing key for, in the
// format of Vault's transit engine, so that the stock `vault transit import`
// command does the wrapping; keys/<name>/import creates a ring whose active
// key is that key, under the kid verifiers know it by; keys/<name>/trust
// publishes the issuer's older public keys until its tokens signed with them
// have expired. Whoever can write import or trust can make a key they hold
// sign, or verify, for the mount: both have their own policy
// (policies/importer.hcl).

func pathImport(b *backend) []*framework.Path {
	importFields := withRingSettings(map[string]*framework.FieldSchema{
		"name": ringNameField,
		"ciphertext": {
			Type:        framework.TypeString,
			Description: "The private key (PKCS#8 DER; PKCS#1 and SEC 1 also taken) wrapped for this mount in the transit import format: base64 of the RSA-OAEP (SHA-256) encryption of an ephemeral AES-256 key to wrapping_key, followed by the key wrapped under it with KWP (RFC 5649). vault transit import makes it.",
			Required:    true,
		},
		"kid": {
			Type:        framework.TypeString,
			Description: "The kid verifiers know the key by (1 to 128 letters, digits and - _ . ~ : + / = @ #). Default: the key's RFC 7638 thumbprint.",
		},
	})
	importFields["algorithm"] = &framework.FieldSchema{
		Type:        framework.TypeString,
		Description: "Required: the alg the issuer's tokens carry (RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, ES512 or EdDSA); the key must fit it. The ring's later keys use it too.",
		Required:    true,
	}
	importFields["rsa_bits"] = &framework.FieldSchema{
		Type:        framework.TypeInt,
		Description: "RSA size of the ring's later keys: 2048, 3072 or 4096. Default: the imported key's size (rounded up to one of these).",
	}
	return []*framework.Path{
		{
			Pattern:      "wrapping_key$",
			DisplayAttrs: &framework.DisplayAttributes{OperationPrefix: operationPrefix},
			Operations: map[logical.Operation]framework.OperationHandler{
				// Forwarded: the first read makes and stores the key pair.
				logical.ReadOperation: writeOp(b.pathWrappingKeyRead, "read", "wrapping-key", "Read the public key to wrap a signing key with for import (made on the first read).", map[string]*framework.FieldSchema{
					"public_key": {Type: framework.TypeString, Description: "The mount's RSA-4096 wrapping key, PKIX PEM.", Required: true},
				}),
			},
			HelpSynopsis:    "The public key that keys for import are wrapped for.",
			HelpDescription: pathWrappingKeyHelpDesc,
		},
		{
			Pattern:      "keys/" + framework.GenericNameRegex("name") + "/import$",
			DisplayAttrs: &framework.DisplayAttributes{OperationPrefix: operationPrefix},
			Fields:       importFields,
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.UpdateOperation: writeOp(b.pathImport, "import", "key", "Create a ring whose active key is an existing issuer's key, wrapped for this mount.", importAnswer()),
			},
			HelpSynopsis:    "Create a ring from an existing issuer's signing key, keeping its kid.",
			HelpDescription: pathImportHelpDesc,
		},
	}
}

// importAnswer is the ring's read form plus the imported kid.
func importAnswer() map[string]*framework.FieldSchema {
	out := map[string]*framework.FieldSchema{
		"kid": {Type: framework.TypeString, Description: "The imported key's kid: the ring's active key.", Required: true},
	}
	for k, v := range ringAnswer {
		out[k] = v
	}
	return out
}

func (b *backend) pathWrappingKeyRead(ctx context.Context, req *logical.Request, _ *framework.FieldData) (*logical.Response, error) {
	b.writeLock.Lock()
	defer b.writeLock.Unlock()
	k, err := b.wrappingKey(ctx, req.Storage, true)
	if err != nil {
		return nil, err
	}
	pub, err := wrappingPublicPEM(k)
	if err != nil {
		return nil, err
	}
	return &logical.Response{Data: map[string]any{"public_key": pub}}, nil
}

func (b *backend) pathImport(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	name := d.Get("name").(string)
	if _, ok := d.GetOk("algorithm"); !ok {
		return respond(refuse("algorithm", "required for an import: give the alg the issuer's tokens carry (such as RS256, ES256 or EdDSA); the key must fit it, and the ring's later keys use it too"))
	}
	kid := ""
	if v, ok := d.GetOk("kid"); ok {
		kid = v.(string)
		if err := checkKID(kid); err != nil {
			return respond(err)
		}
	}
	b.writeLock.Lock()
	defer b.writeLock.Unlock()
	snap, clk, err := b.state(ctx, req.Storage)
	if err != nil {
		return nil, err
	}
	now := clk.Schedule
	if old := snap.rings[name]; old != nil {
		if old.DeletedAt != 0 {
			return respond(refuse("name", "ring %q was deleted and its keys stay in the JWKS until %s; an import creates a ring: choose another name", name, fmtTime(lastRemoval(old))))
		}
		return respond(refuse("name", "ring %q exists; an import creates a ring (it never adds a key to one): choose a new name", name))
	}
	r := newRing(name, now)
	readRingSettings(r, d, false)
	_, bitsSet := d.GetOk("rsa_bits")
	if err := b.checkRingSettings(snap, r); err != nil {
		return respond(err)
	}
	wrapping, err := b.wrappingKey(ctx, req.Storage, false)
	if err != nil {
		return nil, err
	}
	der, err := unwrapImport(wrapping, d.Get("ciphertext").(string))
	if err != nil {
		return respond(err)
	}
	key, err := parseImported(der, r.Algorithm, kid)
	if err != nil {
		return respond(err)
	}
	if isRSA(r.Algorithm) && !bitsSet {
		r.RSABits = supportedRSABits[len(supportedRSABits)-1]
		bits := key.Private.Public().(interface{ Size() int }).Size() * 8
		for _, n := range supportedRSABits {
			if n >= bits {
				r.RSABits = n
				break
			}
		}
	}
	h, err := readHistory(ctx, req.Storage)
	if err != nil {
		return nil, err
	}
	if err := checkIdentity(snap, h, identity{kid: key.KID, thumbprint: key.storeID()}, "ciphertext"); err != nil {
		return respond(err)
	}
	res := importOp(r, now, key)
	if err := checkBounds(snap, r, now, "algorithm"); err != nil {
		return respond(err)
	}
	warnings, _, err := b.commitRingWith(ctx, req.Storage, nil, r, now, []*generatedKey{key})
	if err != nil {
		return nil, err
	}
	b.log().Info("key imported", "ring", name, "kid", key.KID, "alg", key.Alg, "thumbprint", key.storeID())
	b.metrics.adopted.WithLabelValues(name, originImported).Inc()
	b.recordActivation(name, res)
	resp := &logical.Response{Data: ringData(r, now)}
	resp.Data["kid"] = key.KID
	for _, w := range append(res.Warnings, warnings...) {
		resp.AddWarning(w)
	}
	return resp, nil
}

const pathWrappingKeyHelpDesc = `
Returns the mount's RSA-4096 wrapping key (PKIX PEM in public_key), made on
the first read and kept in seal-wrapped storage. Keys to import are wrapped
for it in the format of Vault's transit engine, which the stock command does:

    vault transit import jwt/keys/<name> @key.b64 algorithm=RS256 kid=<kid>

Only a holder of read on this path and update on keys/<name>/import can
import (policies/importer.hcl).
`

var pathImportHelpDesc = strings.TrimSpace(`
Creates the ring <name> whose active key, from now, is an existing issuer's
signing key, under the kid its verifiers already know (kid; default its RFC
7638 thumbprint). The key arrives wrapped for this mount (ciphertext, as
vault transit import makes it); plain keys are refused. The other fields are
the ring's settings; algorithm is required and must fit the key (RSA of 2048
to 4096 bits, the curve of ES256/ES384/ES512, Ed25519 for EdDSA).

The imported key signs at once (its verifiers trust it already; reads show
imported: true), its successor is published now and activates after
publish_lead (and at least rotation_period), and the imported key retires
then; its private half is deleted at that retirement and its kid leaves the
JWKS verification_ttl later. Move verifiers that pinned it to the JWKS before
it retires. A kid or key already in the mount, or removed or revoked from it
before, is refused.
`)
