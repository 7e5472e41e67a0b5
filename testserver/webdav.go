package testserver

import (
	"crypto/sha1"
	"encoding/base64"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"testing"
)

// WebDAVServer is Apache httpd with mod_dav and mod_dav_fs (Debian's
// apache2; make apache2 installs it) on a loopback port, run in the
// foreground with a configuration of its own: URL is a DAV collection
// where PUT, MKCOL and DELETE need HTTP Basic authentication as Username
// and anyone may GET.
type WebDAVServer struct {
	URL      string // http://127.0.0.1:PORT/dav/
	Username string
	Password string
	DocRoot  string // the directory behind URL

	store
}

// apache2Bin is Debian's httpd binary.
const apache2Bin = "/usr/sbin/apache2"

// WebDAVOptions are what differs between the WebDAV servers tests start.
type WebDAVOptions struct {
	// CacheControl, when set, is the Cache-Control header of every response
	// under URL. mod_dav_fs stores a PUT's body alone, not the headers
	// it came with, so what verifiers are told about caching is the
	// server's configuration, as on a real Apache serving the copies.
	CacheControl string
}

// WebDAV starts a WebDAVServer for one test and stops it when the test
// ends. A missing apache2 fails the test with the make target to run.
func WebDAV(t testing.TB) *WebDAVServer {
	t.Helper()
	return WebDAVWith(t, WebDAVOptions{})
}

// WebDAVWith is WebDAV with options.
func WebDAVWith(t testing.TB, opts WebDAVOptions) *WebDAVServer {
	t.Helper()
	bin, dir, addr := prepareStore(t, apache2Bin, "apache2", "jwt-rotor-dav-")
	s := &WebDAVServer{Username: "publisher", Password: "dav-test-password", DocRoot: filepath.Join(dir, "htdocs", "dav")}
	s.URL = "http://" + addr + "/dav/"
	// Started as root, httpd serves as nobody: the directories it writes
	// (the collection and the lock database) are nobody's, and the
	// temporary directory is opened to it.
	runAs := ""
	var uid, gid = -1, -1
	if os.Geteuid() == 0 {
		u, err := user.Lookup("nobody")
		if err != nil {
			t.Fatal(err)
		}
		uid, _ = strconv.Atoi(u.Uid)
		gid, _ = strconv.Atoi(u.Gid)
		runAs = fmt.Sprintf("User #%d\nGroup #%d\n", uid, gid)
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{s.DocRoot, filepath.Join(dir, "lock")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if uid != -1 {
			if err := os.Chown(d, uid, gid); err != nil {
				t.Fatal(err)
			}
		}
	}
	// mod_authn_file reads {SHA} entries: base64 of the password's SHA-1,
	// good enough for a throwaway test password.
	sum := sha1.Sum([]byte(s.Password))
	htpasswd := s.Username + ":{SHA}" + base64.StdEncoding.EncodeToString(sum[:]) + "\n"
	if err := os.WriteFile(filepath.Join(dir, "htpasswd"), []byte(htpasswd), 0o644); err != nil {
		t.Fatal(err)
	}
	mods := "/usr/lib/apache2/modules/"
	headers := ""
	if opts.CacheControl != "" {
		headers = fmt.Sprintf("LoadModule headers_module %smod_headers.so\n<Location /dav/>\n    Header always set Cache-Control %q\n</Location>\n", mods, opts.CacheControl)
	}
	conf := fmt.Sprintf(`ServerRoot %[1]q
ServerName 127.0.0.1
Listen %[2]s
PidFile %[1]s/httpd.pid
ErrorLog %[1]s/error.log
LogLevel warn
# One process (-X) serves one connection at a time: a client's idle
# keep-alive connection would hold off every other client.
KeepAlive Off
%[3]sLoadModule mpm_prefork_module %[4]smod_mpm_prefork.so
LoadModule authz_core_module %[4]smod_authz_core.so
LoadModule authz_user_module %[4]smod_authz_user.so
LoadModule authn_core_module %[4]smod_authn_core.so
LoadModule authn_file_module %[4]smod_authn_file.so
LoadModule auth_basic_module %[4]smod_auth_basic.so
LoadModule mime_module %[4]smod_mime.so
LoadModule dav_module %[4]smod_dav.so
LoadModule dav_fs_module %[4]smod_dav_fs.so
TypesConfig /etc/mime.types
DAVLockDB %[1]s/lock/davlock
DocumentRoot %[1]s/htdocs
<Directory />
    AllowOverride None
    Require all denied
</Directory>
<Directory %[1]s/htdocs>
    Require all granted
</Directory>
<Location /dav/>
    Dav On
    AuthType Basic
    AuthName "jwt-rotor test"
    AuthBasicProvider file
    AuthUserFile %[1]s/htpasswd
    <LimitExcept GET HEAD OPTIONS>
        Require valid-user
    </LimitExcept>
</Location>
%[5]s`, dir, addr, runAs, mods, headers)
	confPath := filepath.Join(dir, "httpd.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	s.store = store{t: t, name: "apache2", dir: dir, addr: addr, logPath: filepath.Join(dir, "stdout.log"),
		args: []string{bin, "-X", "-d", dir, "-f", confPath}}
	if err := s.start(); err != nil {
		t.Fatalf("%v\nerror.log:\n%s", err, LogTail(filepath.Join(dir, "error.log"), 30))
	}
	t.Cleanup(s.stop)
	return s
}

// DeleteObject removes name (relative to URL) behind the server's back.
func (s *WebDAVServer) DeleteObject(name string) error {
	return os.Remove(filepath.Join(s.DocRoot, filepath.FromSlash(name)))
}
