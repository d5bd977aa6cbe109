package change

import (
	"bytes"
	"sync"

	"github.com/pgflo/pgflo/internal/event"
)

// cacheLimit bounds each map of a Cache; a full map starts over.
const cacheLimit = 4096

// Cache keeps what the events of the same tables repeat — their columns
// arrays and their names — so Parse allocates them once. It is safe for
// concurrent use; a nil *Cache caches nothing.
type Cache struct {
	mu    sync.Mutex
	cols  map[string][]event.Column
	names map[string]string
}

// NewCache returns an empty cache.
func NewCache() *Cache {
	return &Cache{cols: map[string][]event.Column{}, names: map[string]string{}}
}

// columns returns the columns of a columns array read before, and its
// length; data starts with the array and goes on after it. The array's text
// is the key, up to its first "]": column objects have no brackets outside
// their strings, and a bracket inside a string only makes a miss, since
// addColumns keeps no array with one.
func (c *Cache) columns(data []byte) ([]event.Column, int, bool) {
	if c == nil {
		return nil, 0, false
	}
	end := bytes.IndexByte(data, ']')
	if end < 0 {
		return nil, 0, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	cols, ok := c.cols[string(data[:end+1])]
	return cols, end + 1, ok
}

func (c *Cache) addColumns(raw []byte, cols []event.Column) {
	if c == nil || bytes.Count(raw, []byte("]")) != 1 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.cols[string(raw)]; ok {
		return
	}
	if len(c.cols) >= cacheLimit {
		clear(c.cols)
	}
	c.cols[string(raw)] = cols
}

// intern unquotes a JSON string token, returning a cached string for text
// seen before.
func (c *Cache) intern(raw []byte) (string, error) {
	if c == nil || bytes.IndexByte(raw, '\\') >= 0 || len(raw) < 2 {
		return unquote(raw)
	}
	inner := raw[1 : len(raw)-1]
	c.mu.Lock()
	defer c.mu.Unlock()
	if s, ok := c.names[string(inner)]; ok {
		return s, nil
	}
	if len(c.names) >= cacheLimit {
		clear(c.names)
	}
	s := string(inner)
	c.names[s] = s
	return s, nil
}
