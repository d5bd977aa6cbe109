package tests

import (
	"debug/elf"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// The Dockerfile cannot be built here (no Docker engine), so these tests
// check what the image depends on: the binary builds as the Dockerfile
// builds it, is static (it runs on a distroless base without libc), prints
// its version as a non-root user, and the Dockerfile says what it must.

// imageLdflags are the -X flags the Dockerfile passes, with test values.
const imageLdflags = "-s -w -X main.version=v9.9.9-test -X main.commit=0123abc -X main.dateBuilt=2026-01-02T03:04:05Z"

func TestStaticBinaryRunsAsNonRoot(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary from scratch (-trimpath): skipped with -short")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "pgflo")
	build := exec.Command("go", "build", "-trimpath", "-ldflags", imageLdflags, "-o", bin, ".")
	build.Dir = repoFile(t, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("CGO_ENABLED=0 go build: %v\n%s", err, out)
	}

	f, err := elf.Open(bin)
	if err != nil {
		t.Fatalf("read the binary as ELF: %v", err)
	}
	defer f.Close()
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			t.Error("the binary has a dynamic loader (PT_INTERP): it is not statically linked")
		}
	}
	if libs, err := f.ImportedLibraries(); err != nil {
		t.Errorf("read DT_NEEDED: %v", err)
	} else if len(libs) > 0 {
		t.Errorf("the binary needs shared libraries %v: it is not statically linked", libs)
	}

	run := exec.Command(bin, "version")
	run.Dir = "/"
	run.Env = []string{"HOME=/nonexistent", "PATH=/usr/bin:/bin"}
	if os.Geteuid() == 0 {
		nobody, err := user.Lookup("nobody")
		if err != nil {
			t.Skipf("running as root and there is no user nobody to run pgflo version as (%v)", err)
		}
		uid, err1 := strconv.ParseUint(nobody.Uid, 10, 32)
		gid, err2 := strconv.ParseUint(nobody.Gid, 10, 32)
		if err1 != nil || err2 != nil {
			t.Skipf("user nobody has a non-numeric uid/gid %s/%s", nobody.Uid, nobody.Gid)
		}
		// t.TempDir makes its directories 0700; nobody must reach the binary.
		for _, d := range []string{dir, filepath.Dir(dir)} {
			if err := os.Chmod(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		run.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
	}
	out, err := run.CombinedOutput()
	if err != nil {
		t.Fatalf("pgflo version as uid %d: %v\n%s", uidOf(run), err, out)
	}
	if want := "pgflo v9.9.9-test (commit: 0123abc, built: 2026-01-02T03:04:05Z)\n"; string(out) != want {
		t.Errorf("pgflo version printed %q, want %q", out, want)
	}
}

func uidOf(cmd *exec.Cmd) int {
	if cmd.SysProcAttr != nil && cmd.SysProcAttr.Credential != nil {
		return int(cmd.SysProcAttr.Credential.Uid)
	}
	return os.Geteuid()
}

// The Dockerfile builds in one stage and ships only the binary (and the
// ready pipelines) in a second, static, non-root one.
func TestDockerfile(t *testing.T) {
	data, err := os.ReadFile(repoFile(t, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	var instructions []string
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line != "" && !strings.HasPrefix(line, "#") {
			instructions = append(instructions, line)
		}
	}
	text := strings.Join(instructions, "\n")
	var froms, users []string
	for _, ins := range instructions {
		switch fields := strings.Fields(ins); strings.ToUpper(fields[0]) {
		case "FROM":
			froms = append(froms, ins)
		case "USER":
			users = append(users, fields[1])
		}
	}

	if len(froms) < 2 || !regexp.MustCompile(`(?i)^FROM golang:1\.26\S* AS build$`).MatchString(froms[0]) {
		t.Errorf("want a multi-stage build starting FROM golang:1.26 AS build, got %q", froms)
	}
	if !strings.Contains(text, "COPY --from=build ") {
		t.Error("the final stage does not copy the binary from the build stage")
	}
	for _, want := range []string{
		"CGO_ENABLED=0", "-trimpath",
		"-X main.version=", "-X main.commit=", "-X main.dateBuilt=", // the variables main.go declares
		"COPY resources/ ", "EXPOSE 4195", `ENTRYPOINT ["pgflo"]`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("the Dockerfile lacks %q", want)
		}
	}
	if len(users) == 0 {
		t.Fatal("the Dockerfile sets no USER: the image would run as root")
	}
	final := users[len(users)-1]
	if name, _, _ := strings.Cut(final, ":"); name == "root" || name == "0" {
		t.Errorf("the image runs as USER %s, want a non-root user", final)
	}

	ignore, err := os.ReadFile(repoFile(t, ".dockerignore"))
	if err != nil {
		t.Fatalf("no .dockerignore: %v", err)
	}
	if !regexp.MustCompile(`(?m)^\.git$`).Match(ignore) {
		t.Error(".dockerignore does not keep .git out of the build context")
	}
}
