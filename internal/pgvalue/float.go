package pgvalue

import (
	"math"
	"math/big"
	"math/bits"
	"strconv"
)

// appendFloat writes what float4out/float8out write with extra_float_digits
// above 0 (the server's ryu, src/common/d2s.c and f2s.c): the shortest
// digits strictly inside the interval of decimals that read back as the
// value, the ones nearest it (ties to even), in fixed notation when the
// first digit's decimal exponent is from -4 to below 15 (6 for float4), and
// as "d.ddde+XX" otherwise.
//
// strconv's shortest digits are the same but in two cases: it admits a
// decimal lying exactly on the interval's bound when the mantissa is even
// (the server's ryu is built without STRICTLY_SHORTEST: 1e23 is
// "9.999999999999999e+22" there), and it may break a tie between two
// nearest candidates another way (float4 2^-12 is "0.00024414062" there).
// Both are detected exactly, cheaply, and the digits then found again
// exactly.
func appendFloat(dst []byte, f float64, bitSize int) []byte {
	switch {
	case f != f:
		return append(dst, "NaN"...)
	case math.IsInf(f, 1):
		return append(dst, "Infinity"...)
	case math.IsInf(f, -1):
		return append(dst, "-Infinity"...)
	case f == 0:
		if math.Signbit(f) {
			return append(dst, '-', '0')
		}
		return append(dst, '0')
	}
	if f < 0 {
		dst = append(dst, '-')
		f = -f
	}
	var buf [32]byte
	d, exp, nd := decimalOf(strconv.AppendFloat(buf[:0], f, 'e', -1, bitSize))
	if b := binaryOf(f, bitSize); b.onBound(d, exp-(nd-1)) || b.isTie(d, exp-(nd-1)) {
		d, exp, nd = b.exactShortest(d, exp, nd)
	}
	// The digits, most significant first.
	var digits [20]byte
	for i, v := nd-1, d; i >= 0; i-- {
		digits[i] = byte('0' + v%10)
		v /= 10
	}
	maxExp := 15
	if bitSize == 32 {
		maxExp = 6
	}
	switch {
	case exp < -4 || exp >= maxExp:
		dst = append(dst, digits[0])
		if nd > 1 {
			dst = append(dst, '.')
			dst = append(dst, digits[1:nd]...)
		}
		dst = append(dst, 'e')
		if exp < 0 {
			dst = append(dst, '-')
			exp = -exp
		} else {
			dst = append(dst, '+')
		}
		if exp < 10 {
			dst = append(dst, '0')
		}
		return strconv.AppendInt(dst, int64(exp), 10)
	case exp < 0:
		dst = append(dst, '0', '.')
		for range -exp - 1 {
			dst = append(dst, '0')
		}
		return append(dst, digits[:nd]...)
	case nd <= exp+1:
		dst = append(dst, digits[:nd]...)
		for range exp + 1 - nd {
			dst = append(dst, '0')
		}
		return dst
	}
	dst = append(dst, digits[:exp+1]...)
	dst = append(dst, '.')
	return append(dst, digits[exp+1:nd]...)
}

// decimalOf reads strconv's 'e' form of a positive number, "d[.ddd]e±dd[d]",
// as its digits d (nd of them, without trailing zeros) and the decimal
// exponent of the first.
func decimalOf(s []byte) (d uint64, exp, nd int) {
	i := 0
	for ; s[i] != 'e'; i++ {
		if s[i] != '.' {
			d = d*10 + uint64(s[i]-'0')
			nd++
		}
	}
	for j := i + 2; j < len(s); j++ {
		exp = exp*10 + int(s[j]-'0')
	}
	if s[i+1] == '-' {
		exp = -exp
	}
	for nd > 1 && d%10 == 0 {
		d /= 10
		nd--
	}
	return d, exp, nd
}

// binaryFloat is a positive float as m·2^x, and its bounds: the decimals
// strictly between lo·2^y and hi·2^y read back as it.
type binaryFloat struct {
	m      uint64
	x      int
	lo, hi uint64
	y      int
}

func binaryOf(f float64, bitSize int) binaryFloat {
	var mant uint64
	var biased, mantBits, minExp int
	if bitSize == 32 {
		b := math.Float32bits(float32(f))
		mant, biased, mantBits, minExp = uint64(b&(1<<23-1)), int(b>>23), 23, -149
	} else {
		b := math.Float64bits(f)
		mant, biased, mantBits, minExp = b&(1<<52-1), int(b>>52), 52, -1074
	}
	v := binaryFloat{m: mant, x: minExp}
	if biased > 0 {
		v.m, v.x = mant|1<<mantBits, minExp+biased-1
	}
	v.lo, v.hi, v.y = 2*v.m-1, 2*v.m+1, v.x-1
	if mant == 0 && biased > 1 {
		// A power of two above the smallest normal: the float below is
		// half as far as the one above.
		v.lo, v.hi, v.y = 4*v.m-1, 4*v.m+2, v.x-2
	}
	return v
}

// onBound reports whether d·10^e is one of the bounds. With an odd
// mantissa strconv excludes them as the server does.
func (v binaryFloat) onBound(d uint64, e int) bool {
	if v.m&1 != 0 {
		return false
	}
	return dyadicEqual(d, e, v.lo, v.y) || dyadicEqual(d, e, v.hi, v.y)
}

// isTie reports whether the float lies exactly halfway between d·10^e and
// (d±1)·10^e: (2d±1)·10^e == m·2^(x+1).
func (v binaryFloat) isTie(d uint64, e int) bool {
	return dyadicEqual(2*d+1, e, v.m, v.x+1) || dyadicEqual(2*d-1, e, v.m, v.x+1)
}

// dyadicEqual reports whether d·10^e == n·2^y, for d, n > 0: once each
// side's factors of two are taken out, the powers of two must match and
// the odd parts, d's times 5^e or n's times 5^-e.
func dyadicEqual(d uint64, e int, n uint64, y int) bool {
	tz := bits.TrailingZeros64(d)
	d >>= tz
	tn := bits.TrailingZeros64(n)
	n >>= tn
	if e+tz != y+tn {
		return false
	}
	if e >= 0 {
		p, ok := timesPow5(d, e)
		return ok && p == n
	}
	p, ok := timesPow5(n, -e)
	return ok && p == d
}

// timesPow5 returns v·5^k, ok false when it does not fit 64 bits.
func timesPow5(v uint64, k int) (uint64, bool) {
	if k >= len(pow5) {
		return 0, false
	}
	hi, lo := bits.Mul64(v, pow5[k])
	return lo, hi == 0
}

// pow5 holds the powers of 5 that fit 64 bits.
var pow5 = func() (t [28]uint64) {
	t[0] = 1
	for i := 1; i < len(t); i++ {
		t[i] = t[i-1] * 5
	}
	return t
}()

// exactShortest finds the server's digits in exact arithmetic, given that
// strconv found nd digits with the first's exponent exp: no fewer lie
// strictly inside the bounds. Rare, so it may allocate.
func (v binaryFloat) exactShortest(d uint64, exp, nd int) (uint64, int, int) {
	f := dyadic(v.m, v.x)
	lo, hi := dyadic(v.lo, v.y), dyadic(v.hi, v.y)
	// Candidates are f·10^k rounded down and up, for the k giving nd-1
	// digits on (one fewer, in case strconv's rounding carried into a new
	// digit), then more.
	for k := nd - 2 - exp; k < nd+20-exp; k++ {
		scale := new(big.Rat).SetInt(new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(abs(k))), nil))
		if k < 0 {
			scale.Inv(scale)
		}
		scaled := new(big.Rat).Mul(f, scale)
		down := new(big.Int).Quo(scaled.Num(), scaled.Denom())
		if scaled.IsInt() {
			return trimmedDecimal(down.Uint64(), -k) // f itself: inside
		}
		up := new(big.Int).Add(down, big.NewInt(1))
		inside := func(c *big.Int) bool {
			r := new(big.Rat).Quo(new(big.Rat).SetInt(c), scale)
			return r.Cmp(lo) > 0 && r.Cmp(hi) < 0
		}
		dIn, uIn := inside(down), inside(up)
		switch {
		case dIn && uIn:
			// The nearer, ties to the even one.
			below := new(big.Rat).Sub(scaled, new(big.Rat).SetInt(down))
			switch below.Cmp(big.NewRat(1, 2)) {
			case -1:
				return trimmedDecimal(down.Uint64(), -k)
			case 0:
				if down.Bit(0) == 0 {
					return trimmedDecimal(down.Uint64(), -k)
				}
			}
			return trimmedDecimal(up.Uint64(), -k)
		case dIn:
			return trimmedDecimal(down.Uint64(), -k)
		case uIn:
			return trimmedDecimal(up.Uint64(), -k)
		}
	}
	return d, exp, nd // unreachable: 17 digits (9 for float4) always lie inside
}

// dyadic is n·2^y exactly.
func dyadic(n uint64, y int) *big.Rat {
	r := new(big.Rat).SetInt(new(big.Int).SetUint64(n))
	p := new(big.Rat).SetInt(new(big.Int).Lsh(big.NewInt(1), uint(abs(y))))
	if y < 0 {
		return r.Quo(r, p)
	}
	return r.Mul(r, p)
}

func abs(v int) int {
	if v < 0 {
		return -v
	}
	return v
}

// trimmedDecimal returns d·10^e as digits without trailing zeros, their
// count, and the first's exponent.
func trimmedDecimal(d uint64, e int) (uint64, int, int) {
	for d != 0 && d%10 == 0 {
		d /= 10
		e++
	}
	nd := 1
	for t := d; t >= 10; t /= 10 {
		nd++
	}
	return d, e + nd - 1, nd
}
