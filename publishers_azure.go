package jwtrotor

import (
	"encoding/base64"
	"strings"
)

// The fields of a type=azure_blob publisher: account_url (the Blob
// service's URL, such as https://<account>.blob.core.windows.net), container,
// and either a shared key (account_name with account_key) or a SAS token
// (sas_token). account_key and sas_token are write-only.
//
// A publisher without credentials of its own is refused for this type,
// whatever publishers_allow_ambient_credentials says: ambient Azure
// credentials (managed identity, workload identity) need the SDK's
// azidentity module, which brings the Microsoft Authentication Library and
// its dependencies into the plugin, and a managed identity is fetched from
// the instance metadata service at a link-local address that the sinks'
// outbound client refuses by design, so it would need a second HTTP client
// as the S3 default chain has. Until a deployment needs it, a SAS token
// scoped to the container is the narrower credential anyway.

// checkAzure checks the fields of a type=azure_blob publisher. Its
// refusals never quote account_key or sas_token.
func checkAzure(p *publisherEntry) error {
	if p.AccountURL == "" {
		return refuse("account_url", "required for type=azure_blob; give the storage account's Blob service URL, such as https://<account>.blob.core.windows.net")
	}
	// A SAS URL pasted whole has its signature in the query: refused
	// here without quoting it (checkOutboundURL would quote the URL).
	if strings.ContainsAny(p.AccountURL, "?#") {
		return refuse("account_url", "has a query or fragment; give the Blob service URL alone, and a SAS token in sas_token (the value is not repeated here, since it may hold a signature)")
	}
	if err := checkOutboundURL("account_url", p.AccountURL, false); err != nil {
		return err
	}
	if err := checkContainer(p.Container); err != nil {
		return err
	}
	if p.AccountName != "" {
		n := p.AccountName
		if len(n) < 3 || len(n) > 24 || strings.Trim(n, "abcdefghijklmnopqrstuvwxyz0123456789") != "" {
			return refuse("account_name", "%q is not a storage account name; use 3 to 24 lower-case letters and digits", n)
		}
	}
	if err := checkCredential("account_key", p.AccountKey, maxAccountKeyLen, false); err != nil {
		return err
	}
	if p.AccountKey != "" {
		if _, err := base64.StdEncoding.DecodeString(p.AccountKey); err != nil {
			return refuse("account_key", "is not base64; give the storage account's access key exactly as the portal or az storage account keys list shows it (the value is not repeated here)")
		}
	}
	if err := checkPaired("account_name", p.AccountName, "account_key", p.AccountKey); err != nil {
		return err
	}
	if err := checkCredential("sas_token", p.SASToken, maxSASTokenLen, false); err != nil {
		return err
	}
	if p.SASToken != "" {
		q := strings.TrimPrefix(p.SASToken, "?")
		if strings.Contains(q, "#") || !strings.Contains("&"+q, "&sig=") {
			return refuse("sas_token", "is not a SAS token: give the query string of a shared access signature (sv=...&sig=...), with or without its leading ? (the value is not repeated here)")
		}
		if p.AccountKey != "" {
			return refuse("sas_token", "give either account_name and account_key (shared key) or sas_token, not both; clear the other (\"\")")
		}
	}
	if p.ambient() {
		return refuse("sas_token", "type=azure_blob needs credentials of its own: give sas_token, or account_name and account_key. Ambient Azure credentials (managed identity, workload identity) are not supported by this plugin for azure_blob, whatever publishers_allow_ambient_credentials says")
	}
	return nil
}

// checkContainer holds a container name to Azure's naming rules: 3 to 63
// lower-case letters, digits and single hyphens, starting and ending with
// a letter or digit; or one of the special containers $root and $web (the
// latter serves a static website).
func checkContainer(c string) error {
	if c == "" {
		return refuse("container", "required for type=azure_blob; give the container's name, such as oidc")
	}
	if c == "$web" || c == "$root" {
		return nil
	}
	ok := len(c) >= 3 && len(c) <= 63 && strings.Trim(c, "abcdefghijklmnopqrstuvwxyz0123456789-") == "" &&
		isAlnum(c[0]) && isAlnum(c[len(c)-1]) && !strings.Contains(c, "--")
	if !ok {
		return refuse("container", "%q is not a container name; use 3 to 63 lower-case letters, digits and single hyphens, starting and ending with a letter or digit (or $web, $root)", c)
	}
	return nil
}
