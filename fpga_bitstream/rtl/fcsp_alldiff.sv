// ALLDIFF propagator of ISA v1 (docs/isa.md; reference: engine/reference.py alldiff), one constraint per cycle in two
// pipeline stages. Naked singles: every variable that is not fixed loses the values of the fixed variables. Two fixed
// variables with one value: a conflict. With `exact`: a value with no place left is a conflict, a value with exactly
// one place fixes that variable (hidden single), one variable being the only place of two values is a conflict.
// Scope positions with `used` clear take no part.
//
// Stage 1 (the cycle the record is given) counts over the scope: which positions are fixed, which values the fixed
// positions hold, which values have exactly one place and which positions are the only place of one; all conflicts
// are known here. Stage 2 (the next cycle) applies those per position to `doms_late`, the same domains again, one
// LUT deep per output bit: the engine's domains do not change within a sweep, so the wired engine gives the same
// wires twice instead of 81 registers per lane, and a lane whose reads change every cycle gives its registered copy.
// The second stage is short because the engine's own work follows it in the same cycle (the AND into each variable,
// and whether it changed or emptied; docs/rtl.md "Timing").
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
    input  logic             clk,
    // stage 1
    input  logic [MS*DW-1:0] doms,
    input  logic [   MS-1:0] used,
    input  logic             exact,
    input  logic [   DW-1:0] full,       // (1 << D) - 1: every value of the program's domain
    // stage 2: the record of the previous cycle
    input  logic [MS*DW-1:0] doms_late,  // the domains `doms` held in the previous cycle
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

  // --- stage 1: over the scope ---
  logic [DW-1:0] fixed_once, fixed_twice, once, twice, hidden, d1;
  logic [MS-1:0] fixed, only_place;
  logic [1:0] c;
  logic conflict_scope;
  always_comb begin
    fixed_once = '0;
    fixed_twice = '0;
    once = '0;
    twice = '0;
    for (int i = 0; i < MS; i++) begin
      d1 = doms[i*DW+:DW];
      fixed[i] = used[i] && count2(d1) == 2'b01;
      if (fixed[i]) begin
        fixed_twice = fixed_twice | (fixed_once & d1);
        fixed_once  = fixed_once | d1;
      end
      if (used[i]) begin
        twice = twice | (once & d1);
        once  = once | d1;
      end
    end
    hidden = once & ~twice;  // the values with exactly one place
    conflict_scope = fixed_twice != '0 || (exact && once != full);
    for (int i = 0; i < MS; i++) begin
      c = count2(doms[i*DW+:DW] & hidden);
      only_place[i] = exact && used[i] && c[0];  // the only place of some value: it keeps just those
      conflict_scope = conflict_scope | (only_place[i] & c[1]);  // ... of two values
    end
  end

  logic [DW-1:0] fixed_once_q, hidden_q;
  logic [MS-1:0] fixed_q, only_place_q;
  logic conflict_q;
  always_ff @(posedge clk) begin
    fixed_once_q <= fixed_once;
    hidden_q <= hidden;
    fixed_q <= fixed;
    only_place_q <= only_place;
    conflict_q <= conflict_scope;
  end

  // --- stage 2: per position ---
  assign conflict = conflict_q;
  always_comb
    for (int i = 0; i < MS; i++)
      outs[i*DW+:DW] = doms_late[i*DW+:DW] & (fixed_q[i] ? '1 : ~fixed_once_q) & (only_place_q[i] ? hidden_q : '1);
endmodule
