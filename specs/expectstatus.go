package specs

// validExpectStatus recognises the expectStatus grammar (see
// HealthCheck.ExpectStatus): a strict subset of regular expressions that
// Go's regexp and HAProxy's PCRE accept and read the same way. It is a
// hand-written recogniser on purpose: acceptance by either engine is not
// the test, membership in the subset is.
func validExpectStatus(s string) bool {
	if s == "" || len(s) > maxExpectStatus {
		return false
	}
	r := statusReader{s: s}
	if r.peek() == '^' {
		r.i++
	}
	if len(r.s) > r.i && r.s[len(r.s)-1] == '$' {
		r.s = r.s[:len(r.s)-1]
	}
	items := 0
	for r.i < len(r.s) {
		if r.peek() == '(' {
			if !r.group() {
				return false
			}
		} else if !r.atom() {
			return false
		}
		if !r.quantifier() {
			return false
		}
		items++
	}
	return items > 0
}

// statusReader walks an expectStatus pattern; each method consumes one
// construct and reports whether it was well formed.
type statusReader struct {
	s string
	i int
}

func (r *statusReader) peek() byte {
	if r.i < len(r.s) {
		return r.s[r.i]
	}
	return 0
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// atom: a digit, '.', or a class of digits and ascending digit ranges.
func (r *statusReader) atom() bool {
	switch c := r.peek(); {
	case isDigit(c) || c == '.':
		r.i++
		return true
	case c != '[':
		return false
	}
	r.i++
	ranges := 0
	for r.peek() != ']' {
		lo := r.peek()
		if !isDigit(lo) {
			return false
		}
		r.i++
		if r.peek() == '-' {
			r.i++
			hi := r.peek()
			if !isDigit(hi) || hi < lo {
				return false
			}
			r.i++
		}
		ranges++
	}
	r.i++ // ']'
	return ranges > 0
}

// group: "(" seq {"|" seq} ")", where a seq is atoms with quantifiers.
func (r *statusReader) group() bool {
	r.i++ // '('
	for {
		n := 0
		for r.peek() != '|' && r.peek() != ')' {
			if !r.atom() || !r.quantifier() {
				return false
			}
			n++
		}
		if n == 0 {
			return false
		}
		if r.peek() == ')' {
			r.i++
			return true
		}
		r.i++ // '|'
	}
}

// quantifier: nothing, '?', {n} or {n,m} with 0 <= n <= m <= 3 and m >= 1.
func (r *statusReader) quantifier() bool {
	switch r.peek() {
	case '?':
		r.i++
		return true
	case '{':
	default:
		return true
	}
	r.i++
	n := r.peek()
	if !isDigit(n) {
		return false
	}
	r.i++
	m := n
	if r.peek() == ',' {
		r.i++
		m = r.peek()
		if !isDigit(m) {
			return false
		}
		r.i++
	}
	if r.peek() != '}' {
		return false
	}
	r.i++
	return n <= m && m >= '1' && m <= '0'+maxStatusRepeats
}
