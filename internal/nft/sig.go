package nft

import (
	"fmt"
	"strings"

	"github.com/google/nftables/expr"
)

// ruleSig describes a rule's expressions the way `nft --debug=netlink`
// does, with anonymous sets by their contents (anon resolves a set name
// to them) and named sets by name only, so that a rule read back from the
// kernel compares equal to the rule mailgate built. Kernel prints a rule
// it does not recognise as a comment holding its signature.
func ruleSig(es []expr.Any, anon func(name string) string) string {
	parts := make([]string, len(es))
	for i, e := range es {
		parts[i] = "[ " + exprSig(e, anon) + " ]"
	}
	return strings.Join(parts, " ")
}

func exprSig(e expr.Any, anon func(name string) string) string {
	switch e := e.(type) {
	case *expr.Lookup:
		name := e.SetName
		if strings.HasPrefix(name, "__set") {
			name = anon(name)
		}
		s := fmt.Sprintf("lookup reg %d set %s", e.SourceRegister, name)
		if e.IsDestRegSet {
			s += fmt.Sprintf(" dreg %d", e.DestRegister)
		}
		if e.Invert {
			s += " 0x1"
		}
		return s
	case *expr.Dynset:
		var sub []string
		for _, x := range e.Exprs {
			sub = append(sub, exprSig(x, anon))
		}
		return fmt.Sprintf("dynset op %d reg_key %d reg_data %d set %s timeout %v inv %v expr [ %s ]",
			e.Operation, e.SrcRegKey, e.SrcRegData, e.SetName, e.Timeout, e.Invert, strings.Join(sub, ", "))
	case *expr.Counter:
		return "counter"
	case *expr.Meta:
		return fmt.Sprintf("meta key %d sreg %v reg %d", e.Key, e.SourceRegister, e.Register)
	case *expr.Cmp:
		return fmt.Sprintf("cmp op %d reg %d 0x%x", e.Op, e.Register, e.Data)
	case *expr.Payload:
		return fmt.Sprintf("payload op %d base %d + %d len %d dreg %d sreg %d csum %d/%d/%d",
			e.OperationType, e.Base, e.Offset, e.Len, e.DestRegister, e.SourceRegister, e.CsumType, e.CsumOffset, e.CsumFlags)
	case *expr.Bitwise:
		return fmt.Sprintf("bitwise reg %d = ( reg %d & 0x%x ) ^ 0x%x len %d", e.DestRegister, e.SourceRegister, e.Mask, e.Xor, e.Len)
	case *expr.Ct:
		return fmt.Sprintf("ct key %d reg %d sreg %v dir %d/%v", e.Key, e.Register, e.SourceRegister, e.Direction, e.OptDirection)
	case *expr.Limit:
		return fmt.Sprintf("limit type %d rate %d unit %d burst %d over %v", e.Type, e.Rate, e.Unit, e.Burst, e.Over)
	case *expr.Verdict:
		return fmt.Sprintf("verdict %d %s", e.Kind, e.Chain)
	}
	return fmt.Sprintf("%T %+v", e, e)
}
