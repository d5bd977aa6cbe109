package config

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// parseFile parses a config file's contents. Its errors are one line,
// "failed to read config file PATH:LINE: …" where YAML names a line.
func parseFile(data []byte, path string) (map[string]any, error) {
	file := map[string]any{}
	err := yaml.Unmarshal(data, &file)
	var typeErr *yaml.TypeError
	switch {
	case err == nil:
		return file, nil
	case errors.As(err, &typeErr):
		// yaml lists these one per line ("line 1: cannot unmarshal …").
		// A quoted value in them may span lines ("`0\n0`").
		return nil, fmt.Errorf("failed to read config file %s: want a map of pg_flo settings: %s", path, oneLine(strings.Join(typeErr.Errors, "; ")))
	}
	if m := yamlLine.FindStringSubmatch(err.Error()); m != nil {
		return nil, fmt.Errorf("failed to read config file %s:%s: %s", path, m[1], oneLine(m[2]))
	}
	return nil, fmt.Errorf("failed to read config file %s: %s", path, oneLine(err.Error()))
}

// oneLine writes line breaks in an error's text as \n, so the error stays
// one line.
func oneLine(s string) string {
	return strings.NewReplacer("\r", `\r`, "\n", `\n`).Replace(s)
}

// yamlLine matches a YAML syntax error that names its line.
var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// kindNames say what a config file must hold for each kind.
var kindNames = map[kind]string{kindString: "a string", kindInt: "a whole number", kindBool: "true or false", kindList: "a list of names"}

// describe names a config file value in an error, on one line.
func describe(raw any) string {
	switch raw.(type) {
	case nil:
		return "nothing"
	case []any:
		return "a list"
	case map[string]any, map[any]any:
		return "a map"
	}
	return strconv.Quote(fmt.Sprint(raw))
}
