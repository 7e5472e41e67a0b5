package jwtrotor

import (
	"context"
	"fmt"
	"strings"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
)

// keys/<name>/trust publishes an adopted issuer's older public keys until
// its tokens signed with them have expired (docs/migrating.md); its
// refusals and bounds are trustOp's (trust.go), the parsing of the key
// parseTrustedJWK's and parseTrustedPEM's.

func pathTrust(b *backend) *framework.Path {
	return &framework.Path{
		Pattern:      "keys/" + framework.GenericNameRegex("name") + "/trust$",
		DisplayAttrs: &framework.DisplayAttributes{OperationPrefix: operationPrefix},
		Fields: map[string]*framework.FieldSchema{
			"name": ringNameField,
			"jwk": {
				Type:        framework.TypeMap,
				Description: "The public key as a JWK (an object, or a JSON object as a string): kty RSA, EC or OKP with its public parameters; kid and alg may be in it. Private members are refused.",
			},
			"pem": {
				Type:        framework.TypeString,
				Description: "The public key as PEM (PUBLIC KEY or RSA PUBLIC KEY), instead of jwk; kid and alg are then required.",
			},
			"kid": {
				Type:        framework.TypeString,
				Description: "The kid the old issuer's tokens carry (1 to 128 letters, digits and - _ . ~ : + / = @ #); required with pem, and must match the jwk's kid if both are given.",
			},
			"alg": {
				Type:        framework.TypeString,
				Description: "The alg the old issuer's tokens carry; required with pem, and must match the jwk's alg if both are given.",
			},
			"expires_at": {
				Type:        framework.TypeInt,
				Description: fmt.Sprintf("Required: when the key leaves the JWKS (Unix seconds), at most %d days from now: after the last token signed with it expires.", maxTrustPeriodSeconds/86400),
				Required:    true,
			},
		},
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.UpdateOperation: writeOp(b.pathTrust, "trust", "key", "Publish an old public key of an adopted issuer until a given time; it never signs.", map[string]*framework.FieldSchema{
				"kid":          {Type: framework.TypeString, Description: "The trusted kid.", Required: true},
				"alg":          {Type: framework.TypeString, Description: "Its algorithm.", Required: true},
				"thumbprint":   {Type: framework.TypeString, Description: "Its RFC 7638 thumbprint.", Required: true},
				"added_at":     {Type: framework.TypeInt64, Description: "When it entered the JWKS (Unix seconds).", Required: true},
				"expires_at":   {Type: framework.TypeInt64, Description: "When it leaves the JWKS (Unix seconds).", Required: true},
				"trusted_keys": {Type: framework.TypeSlice, Description: "Every trusted key of the ring now.", Required: true},
			}),
		},
		HelpSynopsis:    "Publish an old public key of an adopted issuer, for a bounded time.",
		HelpDescription: pathTrustHelpDesc,
	}
}

func (b *backend) pathTrust(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	name := d.Get("name").(string)
	rawJWK, hasJWK := d.GetOk("jwk")
	rawPEM, hasPEM := d.GetOk("pem")
	if hasJWK == hasPEM {
		return respond(refuse("jwk", "give the public key either as jwk (a JSON object) or as pem, one of the two"))
	}
	expires, ok := d.GetOk("expires_at")
	if !ok {
		return respond(refuse("expires_at", "required: when the key leaves the JWKS (Unix seconds), after the last token the old issuer signed with it expires; at most %d days from now", maxTrustPeriodSeconds/86400))
	}
	kid, _ := d.Get("kid").(string)
	alg, _ := d.Get("alg").(string)
	_, kidSet := d.GetOk("kid")
	_, algSet := d.GetOk("alg")
	keyField := "pem"
	var pub any
	if hasJWK {
		keyField = "jwk"
		p, jwkKID, jwkAlg, err := parseTrustedJWK(rawJWK.(map[string]any))
		if err != nil {
			return respond(err)
		}
		pub = p
		switch {
		case kidSet && jwkKID != "" && jwkKID != kid:
			return respond(refuse("kid", "%q differs from the jwk's kid %q; give one of them, or the same", kid, jwkKID))
		case !kidSet:
			kid, kidSet = jwkKID, jwkKID != ""
		}
		switch {
		case algSet && jwkAlg != "" && jwkAlg != alg:
			return respond(refuse("alg", "%q differs from the jwk's alg %q; give one of them, or the same", alg, jwkAlg))
		case !algSet:
			alg, algSet = jwkAlg, jwkAlg != ""
		}
	} else {
		p, err := parseTrustedPEM(rawPEM.(string))
		if err != nil {
			return respond(err)
		}
		pub = p
	}
	if !kidSet {
		return respond(refuse("kid", "required: the kid the old issuer's tokens carry (in the jwk, or as kid)"))
	}
	if err := checkKID(kid); err != nil {
		return respond(err)
	}
	if !algSet {
		return respond(refuse("alg", "required: the alg the old issuer's tokens carry (in the jwk, or as alg), such as RS256"))
	}
	if err := checkKeyAlg(pub, alg, "alg", keyField); err != nil {
		return respond(err)
	}
	tp, jwk, err := publicJWKAs(pub, alg, kid)
	if err != nil {
		return nil, err
	}

	return b.runOp(ctx, req, name, &ringTrust{
		key:      trustedKey{KID: kid, Alg: alg, Thumbprint: tp, PublicJWK: jwk, ExpiresAt: int64(expires.(int))},
		keyField: keyField,
	})
}

// ringTrust is keys/<name>/trust, run by runOp (path_keys_ops.go) like the
// lifecycle operations: key, parsed and checked, joins the ring's JWKS.
// keyField names the field that carried it.
type ringTrust struct {
	key      trustedKey
	keyField string
}

func (o *ringTrust) missing(name, mount string) error {
	return refuse("name", "no key ring %q; trust old keys on the ring that took over the issuer (create it with vault write %skeys/%s/import)", name, mount, name)
}

// check refuses a kid or key the mount holds, or has let go of.
func (o *ringTrust) check(ctx context.Context, s logical.Storage, snap *snapshot) error {
	h, err := readHistory(ctx, s)
	if err != nil {
		return err
	}
	return checkIdentity(snap, h, identity{kid: o.key.KID, thumbprint: o.key.Thumbprint}, o.keyField)
}

func (o *ringTrust) apply(r *ringEntry, now int64) (opResult, error) {
	return trustOp(r, now, o.key, o.keyField)
}

// stocks: a trusted key never signs, so the signing keys are left as they
// are.
func (o *ringTrust) stocks() bool { return false }

func (o *ringTrust) boundsField() string { return o.keyField }

func (o *ringTrust) record(b *backend, ring string, _ opResult) {
	t := &o.key
	b.log().Info("key trusted", "ring", ring, "kid", t.KID, "alg", t.Alg, "thumbprint", t.Thumbprint, "expires_at", fmtTime(t.ExpiresAt))
	b.metrics.adopted.WithLabelValues(ring, originTrusted).Inc()
}

func (o *ringTrust) answer(r *ringEntry, now int64, _ opResult) map[string]any {
	t := &o.key
	return map[string]any{
		"kid": t.KID, "alg": t.Alg, "thumbprint": t.Thumbprint, "added_at": now, "expires_at": t.ExpiresAt,
		"trusted_keys": ringData(r, now)["trusted_keys"],
	}
}

var pathTrustHelpDesc = strings.TrimSpace(fmt.Sprintf(`
Publishes an old public key of the issuer this ring adopted, so that tokens
it signed before the import keep verifying, until expires_at (at most %d
days ahead). Give the key as jwk (kty, kid, alg and its public parameters) or
as pem with kid and alg; private members are refused and never repeated. The
JWKS serves it rebuilt from the parsed key; it never signs, and counts
against the ring's 40 keys and the mount's 50 KiB. At most %d per ring.
keys/<name>/revoke removes one early, for good.
`, maxTrustPeriodSeconds/86400, maxTrustedKeys))
