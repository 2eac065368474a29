package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
)

// copyEncoder writes rows in COPY's binary format into one buffer, for
// pgconn's CopyFrom. pgx's own CopyFrom does the same through an io.Pipe
// and a goroutine, boxing every value in an interface and growing a fresh
// buffer for each statement: a few kilobytes of garbage per row, which the
// collector then has to find. Here the buffer is pooled, and the column
// types this table really has (read once, see copyColumnTypes) decide the
// encoding: text, bytea, json, jsonb and xid8 directly, anything else
// through pgx's type map.
type copyEncoder struct {
	buf  []byte
	oids []uint32
	col  int
	m    *pgtype.Map
	err  error
	// lost: a COPY that failed other than by the server's answer may
	// leave pgconn's reader of buf running; buf is then not pooled.
	lost bool
}

// copySignature starts a binary COPY stream (PostgreSQL's COPY, "Binary
// Format"): the signature, no flags, no header extension.
const copySignature = "PGCOPY\n\xff\r\n\x00\x00\x00\x00\x00\x00\x00\x00\x00"

// maxPooledCopyBuffer is the largest buffer kept for the next COPY: one of
// large messages is let go rather than held.
const maxPooledCopyBuffer = 4 << 20

var copyBuffers = sync.Pool{New: func() any { return new([]byte) }}

func newCopyEncoder(m *pgtype.Map, oids []uint32) *copyEncoder {
	bp := copyBuffers.Get().(*[]byte)
	return &copyEncoder{buf: append((*bp)[:0], copySignature...), oids: oids, m: m}
}

// release returns the buffer to the pool.
func (e *copyEncoder) release() {
	if !e.lost && cap(e.buf) <= maxPooledCopyBuffer {
		b := e.buf[:0]
		copyBuffers.Put(&b)
	}
	e.buf = nil
}

func (e *copyEncoder) row() {
	e.buf = binary.BigEndian.AppendUint16(e.buf, uint16(len(e.oids)))
	e.col = 0
}

// field appends one value: its length, then what put appends.
func (e *copyEncoder) field(put func([]byte) []byte) {
	at := len(e.buf)
	e.buf = put(binary.BigEndian.AppendUint32(e.buf, 0))
	binary.BigEndian.PutUint32(e.buf[at:], uint32(len(e.buf)-at-4))
	e.col++
}

func (e *copyEncoder) text(s string) {
	switch e.oids[e.col] {
	case pgtype.TextOID, pgtype.VarcharOID, pgtype.BPCharOID, pgtype.NameOID, pgtype.JSONOID, pgtype.ByteaOID:
		// Their binary form is the bytes themselves.
		e.field(func(b []byte) []byte { return append(b, s...) })
	case pgtype.JSONBOID:
		e.field(func(b []byte) []byte { return append(append(b, 1), s...) }) // format version 1
	default:
		e.other(s)
	}
}

func (e *copyEncoder) bytes(v []byte) {
	switch e.oids[e.col] {
	case pgtype.TextOID, pgtype.VarcharOID, pgtype.BPCharOID, pgtype.NameOID, pgtype.JSONOID, pgtype.ByteaOID:
		e.field(func(b []byte) []byte { return append(b, v...) })
	case pgtype.JSONBOID:
		e.field(func(b []byte) []byte { return append(append(b, 1), v...) })
	default:
		e.other(v)
	}
}

func (e *copyEncoder) uint64(v uint64) {
	if e.oids[e.col] == pgtype.XID8OID {
		e.field(func(b []byte) []byte { return binary.BigEndian.AppendUint64(b, v) })
		return
	}
	e.other(v)
}

// other encodes v as pgx would for a column type the cases above do not
// know (a table made by other means than InitSchema).
func (e *copyEncoder) other(v any) {
	if e.err != nil {
		e.col++
		return
	}
	var err error
	col := e.col
	e.field(func(b []byte) []byte {
		var out []byte
		oid := e.oids[col]
		out, err = e.m.Encode(oid, pgtype.BinaryFormatCode, v, b)
		if err != nil {
			// Text the type has no binary plan for from a Go string
			// (a uuid column, say): read it as the type's text form, then
			// write that value in binary.
			var text []byte
			switch t := v.(type) {
			case string:
				text = []byte(t)
			case []byte:
				text = t
			}
			var typed any
			if text != nil && e.m.Scan(oid, pgtype.TextFormatCode, text, &typed) == nil {
				out, err = e.m.Encode(oid, pgtype.BinaryFormatCode, typed, b)
			}
		}
		if out == nil && err == nil {
			err = fmt.Errorf("a NULL where a value is needed")
		}
		if err != nil {
			return b
		}
		return out
	})
	if err != nil {
		e.err = fmt.Errorf("column %d (type %d): %w", col+1, e.oids[col], err)
	}
}

// copyIn sends what e holds as COPY table (columns) FROM STDIN.
func (e *copyEncoder) copyIn(ctx context.Context, conn *pgx.Conn, table string, columns []string) (int64, error) {
	if e.err != nil {
		return 0, e.err
	}
	e.buf = binary.BigEndian.AppendUint16(e.buf, 0xffff) // the trailer: -1
	tag, err := conn.PgConn().CopyFrom(ctx, bytes.NewReader(e.buf),
		"COPY "+pgx.Identifier{table}.Sanitize()+" ("+quotedColumns(columns)+") FROM STDIN BINARY")
	// Only the server's answer on a connection still open says pgconn is
	// done with the buffer; otherwise (a network error, or a FATAL error,
	// after which pgconn closes without waiting for its reader) it may
	// still be read, and it is not pooled.
	var pgErr *pgconn.PgError
	if err != nil && (!errors.As(err, &pgErr) || conn.PgConn().IsClosed()) {
		e.lost = true
	}
	return tag.RowsAffected(), err
}

func quotedColumns(columns []string) string {
	q := make([]string, len(columns))
	for i, c := range columns {
		q[i] = pgx.Identifier{c}.Sanitize()
	}
	return strings.Join(q, ", ")
}

// copyColumnTypes remembers the type of each column COPY fills, per table:
// read once with a statement description, forgotten after a failed COPY
// (the table may have been made again).
type copyColumnTypes struct {
	mu    sync.Mutex
	types map[string][]uint32
}

func (c *copyColumnTypes) get(ctx context.Context, conn *pgx.Conn, table string, columns []string) ([]uint32, error) {
	c.mu.Lock()
	oids, ok := c.types[table]
	c.mu.Unlock()
	if ok {
		return oids, nil
	}
	sd, err := conn.PgConn().Prepare(ctx, "", "SELECT "+quotedColumns(columns)+" FROM "+pgx.Identifier{table}.Sanitize(), nil)
	if err != nil {
		return nil, fmt.Errorf("read the column types of %s: %w", table, err)
	}
	oids = make([]uint32, len(sd.Fields))
	for i, f := range sd.Fields {
		oids[i] = f.DataTypeOID
	}
	c.mu.Lock()
	if c.types == nil {
		c.types = map[string][]uint32{}
	}
	c.types[table] = oids
	c.mu.Unlock()
	return oids, nil
}

func (c *copyColumnTypes) forget(table string) {
	c.mu.Lock()
	delete(c.types, table)
	c.mu.Unlock()
}
