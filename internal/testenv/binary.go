package testenv

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"testing"
)

// BinaryEnv names an environment variable that, when set, holds the path of a
// prebuilt pgflo binary for Binary to return instead of building one (CI builds
// once and shares it across test packages).
const BinaryEnv = "PGFLO_TEST_BINARY"

// pgfloBinary is the pgflo binary of this repository (Binary).
var pgfloBinary = &cachedBuild{what: "pgflo", env: BinaryEnv, pkg: ".", name: "pgflo"}

// Binary returns the path of the pgflo binary built from this repository, for
// tests that run the replicator or worker as real subprocesses. It is built once
// per test process (go build of the repository root, found by walking up to
// go.mod); a build failure fails the test with the compiler output.
func Binary(t testing.TB) string {
	t.Helper()
	return pgfloBinary.path(t)
}

// cachedBuild is a program tests run as a subprocess, built once per test
// process, unless the environment variable env names a prebuilt one.
//
// The binary goes to a fixed path per repository under the OS temp dir
// (pgflo-testbin-<uid>/<hash of repo root>/<name>), replaced atomically on each
// build, so repeated runs do not pile up copies and concurrent test packages
// each keep executing a complete file.
type cachedBuild struct {
	what, env string
	pkg       string // main package: a directory of the module or an import path it resolves
	name      string

	once  sync.Once
	built string
	err   error
}

func (b *cachedBuild) path(t testing.TB) string {
	t.Helper()
	built, err := b.get()
	if err != nil {
		t.Fatalf("build %s: %v", b.what, err)
	}
	return built
}

// get builds the program on the first call and returns its path, or the
// build's error, on every call.
func (b *cachedBuild) get() (string, error) {
	b.once.Do(func() { b.built, b.err = b.build() })
	return b.built, b.err
}

func (b *cachedBuild) build() (string, error) {
	if p := os.Getenv(b.env); p != "" {
		if !isExecutable(p) {
			return "", fmt.Errorf("%s=%s is not an executable file", b.env, p)
		}
		return p, nil
	}
	root, err := repoRoot()
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256([]byte(root))
	dir := filepath.Join(os.TempDir(), "pgflo-testbin-"+strconv.Itoa(os.Getuid()), hex.EncodeToString(sum[:6]))
	return buildPackage(root, b.pkg, dir, b.name)
}

// buildMain builds the main package in dir pkgDir into outDir/name, replacing an
// earlier build atomically.
func buildMain(pkgDir, outDir, name string) (string, error) {
	return buildPackage(pkgDir, ".", outDir, name)
}

// buildPackage builds the main package pkg (a directory or an import path
// resolved by the module in dir) into outDir/name, replacing an earlier build
// atomically.
func buildPackage(dir, pkg, outDir, name string) (string, error) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		if p := filepath.Join(os.Getenv("GOROOT"), "bin", "go"); os.Getenv("GOROOT") != "" && isExecutable(p) {
			goBin = p
		} else {
			return "", fmt.Errorf("find the go command: %w", err)
		}
	}
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return "", fmt.Errorf("create binary dir: %w", err)
	}
	exe := name
	if runtime.GOOS == "windows" {
		exe += ".exe"
	}
	final := filepath.Join(outDir, exe)
	tmp := filepath.Join(outDir, fmt.Sprintf(".%s-%d", exe, os.Getpid()))
	cmd := exec.Command(goBin, "build", "-o", tmp, pkg)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		_ = os.Remove(tmp)
		return "", fmt.Errorf("go build %s in %s: %w\n%s", pkg, dir, err, out)
	}
	if err := os.Rename(tmp, final); err != nil {
		_ = os.Remove(tmp)
		return "", fmt.Errorf("install binary: %w", err)
	}
	return final, nil
}

// repoRoot walks up from the working directory (the package dir under go test)
// to the directory holding go.mod.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("find repository root: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		} else if !errors.Is(err, os.ErrNotExist) {
			return "", fmt.Errorf("find repository root: %w", err)
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("find repository root: no go.mod above the working directory")
		}
		dir = parent
	}
}
