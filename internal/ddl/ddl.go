// Package ddl reads and rewrites the SQL text of DDL statements replayed on
// a target: it splits a query string into statements, finds the table a
// statement is about, tells whether it must run outside a transaction
// block, and rewrites table and column names for routing renames.
//
// It is a tokenizer, not a parser: it knows PostgreSQL's lexical rules
// (quoted identifiers, string constants of every kind, dollar quoting,
// nested comments) and the few grammar positions that name a table or a
// column in the statements DDL capture produces. Text it does not
// understand is left as it is.
package ddl

import (
	"strings"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
)

// Kind is the lexical class of a token.
type Kind uint8

// Token kinds.
const (
	Ident  Kind = iota // unquoted identifier or keyword
	Quoted             // "quoted identifier"
	String             // any string constant, dollar-quoted ones included
	Number
	Punct // one character of punctuation, or an operator
)

// Token is one lexical token of a statement.
type Token struct {
	Kind       Kind
	Start, End int // byte offsets in the text
	// Value is an identifier's name: lower-cased when unquoted, unescaped
	// when quoted. For other kinds it is the token's text.
	Value string
}

// Is reports whether the token is the unquoted keyword kw (lower case).
func (t Token) Is(kw string) bool { return t.Kind == Ident && t.Value == kw }

func (t Token) isName() bool { return t.Kind == Ident || t.Kind == Quoted }

// Tokenize splits text into tokens, skipping whitespace and comments. It
// never fails: an unterminated quote or comment runs to the end.
func Tokenize(text string) []Token {
	var out []Token
	i := 0
	for i < len(text) {
		c := text[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v':
			i++
		case c == '-' && strings.HasPrefix(text[i:], "--"):
			if j := strings.IndexByte(text[i:], '\n'); j >= 0 {
				i += j + 1
			} else {
				i = len(text)
			}
		case c == '/' && strings.HasPrefix(text[i:], "/*"):
			i = skipComment(text, i)
		case c == '"':
			end, value := quotedIdent(text, i)
			out = append(out, Token{Kind: Quoted, Start: i, End: end, Value: value})
			i = end
		case c == '\'':
			end := quotedString(text, i+1, false)
			out = append(out, Token{Kind: String, Start: i, End: end, Value: text[i:end]})
			i = end
		case (c == 'E' || c == 'e') && i+1 < len(text) && text[i+1] == '\'':
			end := quotedString(text, i+2, true)
			out = append(out, Token{Kind: String, Start: i, End: end, Value: text[i:end]})
			i = end
		case (c == 'U' || c == 'u') && strings.HasPrefix(text[i+1:], "&\""):
			end, value := quotedIdent(text, i+2)
			out = append(out, Token{Kind: Quoted, Start: i, End: end, Value: value})
			i = end
		case (c == 'U' || c == 'u') && strings.HasPrefix(text[i+1:], "&'"),
			(c == 'B' || c == 'b' || c == 'X' || c == 'x' || c == 'N' || c == 'n') && i+1 < len(text) && text[i+1] == '\'':
			start := i + 2
			if c == 'U' || c == 'u' {
				start = i + 3
			}
			end := quotedString(text, start, false)
			out = append(out, Token{Kind: String, Start: i, End: end, Value: text[i:end]})
			i = end
		case c == '$' && dollarTag(text, i) > 0:
			n := dollarTag(text, i)
			tag := text[i : i+n]
			end := len(text)
			if j := strings.Index(text[i+n:], tag); j >= 0 {
				end = i + n + j + n
			}
			out = append(out, Token{Kind: String, Start: i, End: end, Value: text[i:end]})
			i = end
		case isIdentStart(c):
			j := i + 1
			for j < len(text) && isIdentChar(text[j]) {
				j++
			}
			out = append(out, Token{Kind: Ident, Start: i, End: j, Value: strings.ToLower(text[i:j])})
			i = j
		case c >= '0' && c <= '9' || c == '.' && i+1 < len(text) && text[i+1] >= '0' && text[i+1] <= '9':
			j := i + 1
			for j < len(text) && (isIdentChar(text[j]) || text[j] == '.') {
				j++
			}
			out = append(out, Token{Kind: Number, Start: i, End: j, Value: text[i:j]})
			i = j
		default:
			_, size := utf8.DecodeRuneInString(text[i:])
			out = append(out, Token{Kind: Punct, Start: i, End: i + size, Value: text[i : i+size]})
			i += size
		}
	}
	return out
}

func isIdentStart(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' || c >= 0x80
}

func isIdentChar(c byte) bool { return isIdentStart(c) || c >= '0' && c <= '9' || c == '$' }

// skipComment returns the end of the (nestable) block comment at i.
func skipComment(text string, i int) int {
	depth := 0
	for i < len(text) {
		switch {
		case strings.HasPrefix(text[i:], "/*"):
			depth++
			i += 2
		case strings.HasPrefix(text[i:], "*/"):
			depth--
			i += 2
			if depth == 0 {
				return i
			}
		default:
			i++
		}
	}
	return len(text)
}

// quotedIdent reads the "identifier" starting at the quote at i.
func quotedIdent(text string, i int) (end int, value string) {
	var b strings.Builder
	j := i + 1
	for j < len(text) {
		if text[j] == '"' {
			if j+1 < len(text) && text[j+1] == '"' {
				b.WriteByte('"')
				j += 2
				continue
			}
			return j + 1, b.String()
		}
		b.WriteByte(text[j])
		j++
	}
	return len(text), b.String()
}

// quotedString returns the end of a string constant whose body starts at
// i; backslash escapes count with escapes set (E'…').
func quotedString(text string, i int, escapes bool) int {
	for i < len(text) {
		switch text[i] {
		case '\\':
			if escapes {
				i += 2
				continue
			}
		case '\'':
			if i+1 < len(text) && text[i+1] == '\'' {
				i += 2
				continue
			}
			return i + 1
		}
		i++
	}
	return len(text)
}

// dollarTag returns the length of the dollar-quote opening tag ($$ or
// $tag$) at i, or 0 (a parameter like $1 is not one).
func dollarTag(text string, i int) int {
	j := i + 1
	if j < len(text) && text[j] >= '0' && text[j] <= '9' {
		return 0
	}
	for j < len(text) && text[j] != '$' {
		if !isIdentChar(text[j]) || text[j] == '$' {
			return 0
		}
		j++
	}
	if j >= len(text) {
		return 0
	}
	return j - i + 1
}

// Split splits a query string into its statements (without the
// semicolons), dropping empty ones.
func Split(text string) []string {
	var out []string
	start := 0
	add := func(end int) {
		if s := strings.TrimSpace(text[start:end]); s != "" && len(Tokenize(s)) > 0 {
			out = append(out, s)
		}
	}
	for _, t := range Tokenize(text) {
		if t.Kind == Punct && t.Value == ";" {
			add(t.Start)
			start = t.End
		}
	}
	add(len(text))
	return out
}

// Name is a possibly schema-qualified object name in a statement.
type Name struct {
	Schema, Name string
	// Start and End are the byte offsets of the whole name in the
	// statement.
	Start, End int
}

// Qualified quotes the name, with its schema when it has one.
func (n Name) Qualified() string {
	if n.Schema == "" {
		return pgx.Identifier{n.Name}.Sanitize()
	}
	return pgx.Identifier{n.Schema, n.Name}.Sanitize()
}

// nameAt reads a dotted name at toks[i]; it returns the index after it.
func nameAt(toks []Token, i int) (Name, int, bool) {
	if i >= len(toks) || !toks[i].isName() {
		return Name{}, i, false
	}
	parts := []Token{toks[i]}
	j := i + 1
	for j+1 < len(toks) && toks[j].Kind == Punct && toks[j].Value == "." && toks[j+1].isName() && len(parts) < 3 {
		parts = append(parts, toks[j+1])
		j += 2
	}
	n := Name{Start: parts[0].Start, End: parts[len(parts)-1].End, Name: parts[len(parts)-1].Value}
	if len(parts) > 1 {
		n.Schema = parts[len(parts)-2].Value
	}
	return n, j, true
}

// skipWords skips the optional keywords words, in order, where present.
func skipWords(toks []Token, i int, words ...string) int {
	for _, w := range words {
		if i < len(toks) && toks[i].Is(w) {
			i++
		}
	}
	return i
}

// hasWords reports whether toks[i:] starts with the keywords words.
func hasWords(toks []Token, i int, words ...string) bool {
	for k, w := range words {
		if i+k >= len(toks) || !toks[i+k].Is(w) {
			return false
		}
	}
	return true
}

// Table finds the table a DDL statement is about: the table altered,
// created, dropped, indexed, commented on or triggered on. ok is false for
// statements it does not know.
func Table(stmt string) (Name, bool) {
	toks := Tokenize(stmt)
	if len(toks) == 0 {
		return Name{}, false
	}
	i := 0
	switch {
	case hasWords(toks, 0, "alter", "table"):
		i = skipWords(toks, 2, "if", "exists", "only")
	case toks[0].Is("create") && indexOf(toks, "index") >= 0 && indexOf(toks, "index") <= 2:
		// CREATE [UNIQUE] INDEX [CONCURRENTLY] [[IF NOT EXISTS] name] ON [ONLY] table
		on := indexOf(toks, "on")
		if on < 0 {
			return Name{}, false
		}
		i = skipWords(toks, on+1, "only")
	case toks[0].Is("create") && indexOf(toks, "table") >= 0 && indexOf(toks, "table") <= 4:
		i = skipWords(toks, indexOf(toks, "table")+1, "if", "not", "exists")
	case hasWords(toks, 0, "drop", "table"):
		i = skipWords(toks, 2, "if", "exists")
	case hasWords(toks, 0, "comment", "on", "table"):
		i = 3
	case hasWords(toks, 0, "comment", "on", "column"):
		n, _, ok := nameAt(toks, 3)
		if !ok {
			return Name{}, false
		}
		// table.column or schema.table.column: drop the column part.
		j := 3
		var parts []Token
		for j < len(toks) && toks[j].isName() {
			parts = append(parts, toks[j])
			if j+1 < len(toks) && toks[j+1].Value == "." {
				j += 2
				continue
			}
			break
		}
		if len(parts) < 2 {
			return Name{}, false
		}
		n = Name{Start: parts[0].Start, End: parts[len(parts)-2].End, Name: parts[len(parts)-2].Value}
		if len(parts) > 2 {
			n.Schema = parts[len(parts)-3].Value
		}
		return n, true
	case toks[0].Is("create") && indexOf(toks, "trigger") >= 0 && indexOf(toks, "trigger") <= 4:
		on := indexOf(toks, "on")
		if on < 0 {
			return Name{}, false
		}
		i = on + 1
	default:
		return Name{}, false
	}
	n, _, ok := nameAt(toks, i)
	return n, ok
}

// indexOf returns the index of the first token that is keyword kw, or -1.
func indexOf(toks []Token, kw string) int {
	for i, t := range toks {
		if t.Is(kw) {
			return i
		}
	}
	return -1
}

// NeedsNoTransaction reports whether the statement cannot run inside a
// transaction block: CREATE/DROP INDEX CONCURRENTLY, REINDEX … CONCURRENTLY,
// ALTER TABLE … DETACH PARTITION … CONCURRENTLY, VACUUM.
func NeedsNoTransaction(stmt string) bool {
	toks := Tokenize(stmt)
	if len(toks) == 0 {
		return false
	}
	if toks[0].Is("vacuum") {
		return true
	}
	if toks[0].Is("refresh") { // REFRESH MATERIALIZED VIEW CONCURRENTLY runs in a transaction
		return false
	}
	return indexOf(toks, "concurrently") >= 0
}

// Rename says how to rewrite a statement for a routed table.
type Rename struct {
	// Table replaces the statement's table reference (see Table), schema
	// included; empty leaves it.
	Schema, Table string
	// Columns maps source column names to target names.
	Columns map[string]string
}

// Rewrite returns stmt with its table reference replaced by the renamed,
// schema-qualified table, and the columns of Rename.Columns renamed where an
// ALTER TABLE action names them (ADD, DROP, ALTER, RENAME … TO) and in a
// CREATE INDEX column list. Everything else is kept byte for byte.
func Rewrite(stmt string, r Rename) string {
	type edit struct {
		start, end int
		text       string
	}
	var edits []edit
	if r.Table != "" {
		if n, ok := Table(stmt); ok {
			edits = append(edits, edit{n.Start, n.End, Name{Schema: r.Schema, Name: r.Table}.Qualified()})
		}
	}
	if toks := Tokenize(stmt); len(r.Columns) > 0 && len(toks) > 0 {
		rename := func(t Token) {
			if !t.isName() {
				return
			}
			if to, ok := r.Columns[t.Value]; ok {
				edits = append(edits, edit{t.Start, t.End, pgx.Identifier{to}.Sanitize()})
			}
		}
		switch {
		case hasWords(toks, 0, "alter", "table"):
			n, ok := Table(stmt)
			if !ok {
				break
			}
			// Actions start after the table name and after each comma
			// outside parentheses.
			depth, action := 0, true
			for i := 0; i < len(toks); i++ {
				t := toks[i]
				if t.Start < n.End {
					continue
				}
				switch t.Value {
				case "(":
					depth++
				case ")":
					depth--
				case ",":
					if depth == 0 {
						action = true
						continue
					}
				}
				if t.Value == "*" && t.Kind == Punct { // ALTER TABLE t * …
					continue
				}
				if !action || depth > 0 {
					continue
				}
				action = false
				switch {
				case t.Is("add") || t.Is("drop") || t.Is("alter"):
					j := skipWords(toks, i+1, "column")
					if t.Is("add") {
						j = skipWords(toks, j, "if", "not", "exists")
					} else if t.Is("drop") {
						j = skipWords(toks, j, "if", "exists")
					}
					if j < len(toks) && !isActionWord(toks[j]) {
						rename(toks[j])
					}
				case t.Is("rename"):
					if hasWords(toks, i+1, "to") || hasWords(toks, i+1, "constraint") {
						continue
					}
					j := skipWords(toks, i+1, "column")
					if j+2 < len(toks) && toks[j+1].Is("to") {
						rename(toks[j])
						rename(toks[j+2])
					}
				}
			}
		case toks[0].Is("create") && indexOf(toks, "index") >= 0:
			on := indexOf(toks, "on")
			if on < 0 {
				break
			}
			for i := on + 1; i < len(toks); i++ {
				if toks[i].Value != "(" {
					continue
				}
				// a column list: names separated by commas (with options)
				for j := i + 1; j < len(toks) && toks[j].Value != ")"; j++ {
					if (toks[j-1].Value == "(" || toks[j-1].Value == ",") && toks[j].isName() {
						rename(toks[j])
					}
				}
				break
			}
		}
	}
	if len(edits) == 0 {
		return stmt
	}
	// Apply the edits from the end so offsets stay valid.
	for i := 0; i < len(edits); i++ {
		for j := i + 1; j < len(edits); j++ {
			if edits[j].start > edits[i].start {
				edits[i], edits[j] = edits[j], edits[i]
			}
		}
	}
	out := stmt
	last := len(stmt) + 1
	for _, e := range edits {
		if e.end > last { // overlapping: keep the first
			continue
		}
		out = out[:e.start] + e.text + out[e.end:]
		last = e.start
	}
	return out
}

// isActionWord is a keyword that follows ADD/DROP/ALTER in place of a
// column name.
func isActionWord(t Token) bool {
	if t.Kind != Ident {
		return false
	}
	switch t.Value {
	case "constraint", "primary", "unique", "check", "foreign", "exclude", "table", "not", "default":
		return true
	}
	return false
}

// RenameColumns renames the column references of an expression (a CHECK
// constraint, a default, a generated column, an index definition): every
// identifier token named in columns that is not a function name (followed
// by "(") and not qualified (preceded by "."). Everything else is kept byte
// for byte.
func RenameColumns(expr string, columns map[string]string) string {
	if len(columns) == 0 {
		return expr
	}
	toks := Tokenize(expr)
	var b strings.Builder
	last := 0
	for i, t := range toks {
		if !t.isName() {
			continue
		}
		to, ok := columns[t.Value]
		if !ok || i+1 < len(toks) && toks[i+1].Value == "(" || i > 0 && toks[i-1].Value == "." {
			continue
		}
		b.WriteString(expr[last:t.Start])
		b.WriteString(pgx.Identifier{to}.Sanitize())
		last = t.End
	}
	b.WriteString(expr[last:])
	return b.String()
}

// notReplayed are the first words of statements a DDL replay leaves out:
// data changes (they arrive as change events of their own), queries,
// transaction control and session settings.
var notReplayed = map[string]bool{
	"insert": true, "update": true, "delete": true, "merge": true, "copy": true, "truncate": true,
	"select": true, "values": true, "table": true, "with": true, "explain": true,
	"begin": true, "start": true, "commit": true, "end": true, "rollback": true, "abort": true,
	"savepoint": true, "release": true, "prepare": true,
	"set": true, "reset": true, "show": true, "discard": true, "lock": true,
	"listen": true, "notify": true, "unlisten": true, "fetch": true, "move": true, "close": true, "declare": true,
	"analyze": true, "analyse": true, "vacuum": true, "checkpoint": true,
}

// Replayed reports whether a DDL replay runs the statement: everything but
// data changes, queries, transaction control and session settings.
func Replayed(stmt string) bool {
	toks := Tokenize(stmt)
	return len(toks) > 0 && !(toks[0].Kind == Ident && notReplayed[toks[0].Value])
}

// MovesTable reports whether the statement renames its table or moves it
// to another schema (ALTER TABLE … RENAME TO, ALTER TABLE … SET SCHEMA):
// its table reference is then the table's old name.
func MovesTable(stmt string) bool {
	toks := Tokenize(stmt)
	if !hasWords(toks, 0, "alter", "table") {
		return false
	}
	for i := 2; i+1 < len(toks); i++ {
		if hasWords(toks, i, "rename", "to") || hasWords(toks, i, "set", "schema") {
			return true
		}
	}
	return false
}
