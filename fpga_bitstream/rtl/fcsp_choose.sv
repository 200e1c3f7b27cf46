// The branching variable: among the active (v < N) variables that are not fixed, the one with the fewest values,
// ties to the lowest index (docs/isa.md, Modes). A balanced min-tree over keys {popcount, index}, so the depth
// grows with log2(NV), not NV.
module fcsp_choose #(
    parameter int NV = 81,
    parameter int DW = 9,
    localparam int VW = NV > 1 ? $clog2(NV) : 1
) (
    input  logic [NV*DW-1:0] doms,
    input  logic [   NV-1:0] active,
    output logic [   VW-1:0] var_index,
    output logic             found
);
  localparam int CW = $clog2(DW + 2);  // a count 0..DW, and DW+1 for "not a candidate"
  localparam int KW = CW + VW;
  localparam int LEVELS = $clog2(NV > 1 ? NV : 2);
  localparam int P = 1 << LEVELS;  // leaves, a power of two

  function automatic logic [CW-1:0] popcount(input logic [DW-1:0] d);
    popcount = '0;
    for (int v = 0; v < DW; v++) popcount = popcount + CW'(d[v]);
  endfunction

  logic [P*KW-1:0] keys;
  logic [DW-1:0] d;
  logic [CW-1:0] c;
  always_comb begin
    d = '0;
    c = '0;
    for (int v = 0; v < P; v++) begin
      keys[v*KW+:KW] = {CW'(DW + 1), VW'(v)};  // v < P = 2^VW: the index bits fold to constants
      if (v < NV) begin
        d = doms[v*DW+:DW];
        c = popcount(d);
        if (active[v] && c > 1) keys[v*KW+:KW] = {c, VW'(v)};
      end
    end
    for (int level = 1; level <= LEVELS; level++)
      for (int i = 0; i < P / 2; i++)
        // only the counts are compared: every index of the left subtree is below every index of the right one,
        // so a tie keeps the left key, the lower index (a comparator of CW bits, not KW)
        if (i < (P >> level))
          keys[i*KW+:KW] = keys[(2*i+1)*KW+VW+:CW] < keys[2*i*KW+VW+:CW] ? keys[(2*i+1)*KW+:KW] : keys[2*i*KW+:KW];
    var_index = keys[0+:VW];
    found = keys[VW+:CW] != CW'(DW + 1);
  end
endmodule
