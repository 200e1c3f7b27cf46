// ALLDIFF propagator of ISA v1 (docs/isa.md; reference: engine/reference.py alldiff), one constraint per cycle,
// purely combinational. Naked singles: every variable loses the values of the other fixed variables (two fixed
// variables with one value leave one of them empty, which the engine counts as the conflict). With `exact`:
// a value with no place left is a conflict, a value with exactly one place fixes that variable (hidden single),
// one variable being the only place of two values is a conflict. Scope positions with `used` clear take no part.
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
  function automatic logic single(input logic [DW-1:0] d);
    single = d != '0 && (d & (d - 1'b1)) == '0;  // no `return`: Yosys's frontend does not take it
  endfunction

  logic [DW-1:0] fixed_once, fixed_twice, once, twice, hidden, d, h, taken, o;

  always_comb begin
    fixed_once = '0;
    fixed_twice = '0;
    once = '0;
    twice = '0;
    for (int i = 0; i < MS; i++) begin
      d = doms[i*DW+:DW];
      if (used[i]) begin
        if (single(d)) begin
          fixed_twice = fixed_twice | (fixed_once & d);
          fixed_once  = fixed_once | d;
        end
        twice = twice | (once & d);
        once  = once | d;
      end
    end
    hidden = once & ~twice;
    conflict = exact && once != full;
    for (int i = 0; i < MS; i++) begin
      d = doms[i*DW+:DW];
      // the values taken by some *other* fixed variable
      taken = single(d) ? ((fixed_once & ~d) | fixed_twice) : fixed_once;
      o = d & ~taken;
      h = d & hidden;
      if (exact && used[i] && h != '0) begin
        conflict = conflict | !single(h);
        o = o & h;
      end
      outs[i*DW+:DW] = o;
    end
  end
endmodule
