// ALLDIFF propagator of ISA v1 (docs/isa.md; reference: engine/reference.py alldiff), one constraint per cycle,
// purely combinational. Naked singles: every variable that is not fixed loses the values of the fixed variables.
// Two fixed variables with one value: a conflict. With `exact`: a value with no place left is a conflict, a value
// with exactly one place fixes that variable (hidden single), one variable being the only place of two values is a
// conflict. Scope positions with `used` clear take no part.
//
// Where the reference empties a domain instead of raising its flag (two variables fixed to one value: each loses the
// other's value), this unit raises `conflict` and leaves the domains: the engine ends the node as a conflict in the
// same sweep either way (an empty domain and a propagator's flag are the same to it), and the version without the
// extra term in every output bit is about a fifth smaller (docs/rtl.md "Synthesis"). Its testbench checks exactly
// that contract: the same outputs and flag, or both sides failing.
module fcsp_alldiff #(
    parameter int MS = 9,  // scope positions
    parameter int DW = 9   // bits per domain
) (
    input  logic [MS*DW-1:0] doms,
    input  logic [   MS-1:0] used,
    input  logic             exact,
    input  logic [   DW-1:0] full,      // (1 << D) - 1: every value of the program's domain
    output logic [MS*DW-1:0] outs,
    output logic             conflict
);
  // {at least two bits set, at least one}: a saturating count, which maps to a few LUTs where the classic
  // d & (d - 1) test builds a carry chain per domain
  function automatic logic [1:0] count2(input logic [DW-1:0] x);
    logic any, two;
    any = 1'b0;
    two = 1'b0;
    for (int b = 0; b < DW; b++) begin
      two = two | (any & x[b]);
      any = any | x[b];
    end
    count2 = {two, any};
  endfunction

  logic [DW-1:0] fixed_once, fixed_twice, once, twice, hidden, d, h;
  logic [MS-1:0] fixed, only_place;
  logic [1:0] c;

  always_comb begin
    fixed_once = '0;
    fixed_twice = '0;
    once = '0;
    twice = '0;
    for (int i = 0; i < MS; i++) begin
      d = doms[i*DW+:DW];
      c = count2(d);
      fixed[i] = used[i] && c == 2'b01;
      if (fixed[i]) begin
        fixed_twice = fixed_twice | (fixed_once & d);
        fixed_once  = fixed_once | d;
      end
      if (used[i]) begin
        twice = twice | (once & d);
        once  = once | d;
      end
    end
    hidden = once & ~twice;
    conflict = fixed_twice != '0 || (exact && once != full);
    for (int i = 0; i < MS; i++) begin
      d = doms[i*DW+:DW];
      h = d & hidden;
      c = count2(h);
      only_place[i] = exact && used[i] && c[0];  // the only place of some value: it keeps just those
      conflict = conflict | (only_place[i] & c[1]);
      outs[i*DW+:DW] = d & (fixed[i] ? '1 : ~fixed_once) & (only_place[i] ? hidden : '1);
    end
  end
endmodule
