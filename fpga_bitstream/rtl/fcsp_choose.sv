// The branching variable: among the active (v < N) variables that are not fixed, the one with the fewest values,
// ties to the lowest index (docs/isa.md, Modes). A balanced min-tree over keys {popcount, index}, so the depth
// grows with log2(NV), not NV, cut by three register stages (docs/rtl.md "Timing"):
//
//   stage 1: the leaves (popcounts) and the first tree level, registered at every clock edge;
//   stage 2: the next three levels, registered at every clock edge;
//   stage 3: the remaining levels, registered at every clock edge: `var_index` and `found`.
//
// So `var_index` and `found` are the choice over `doms` and `active` as they were three clock edges ago, and
// `var_index_early` (stage 3 before its register, for a block RAM's address, whose own register is that stage) the
// same choice over the domains of two edges ago; and
// `candidates_q` (some active variable has two values or more) as they were one edge ago. The engine reads them where
// the domains have been stable that long: it chooses in NODE_A, which only ever follows the two EVAL cycles and the
// COMMIT of a sweep that changed nothing, and it asks whether every variable is fixed in COMMIT, which follows EVAL.
module fcsp_choose #(
    parameter int NV = 81,
    parameter int DW = 9,
    localparam int VW = NV > 1 ? $clog2(NV) : 1
) (
    input  logic             clk,
    input  logic [NV*DW-1:0] doms,
    input  logic [   NV-1:0] active,
    output logic [   VW-1:0] var_index,
    output logic [   VW-1:0] var_index_early,
    output logic             found,
    output logic             candidates_q
);
  localparam int CW = $clog2(DW + 2);  // a count 0..DW, and DW+1 for "not a candidate"
  localparam int KW = CW + VW;
  localparam int LEVELS = $clog2(NV > 1 ? NV : 2);
  localparam int P = 1 << LEVELS;  // leaves, a power of two
  localparam int L1 = 1;  // levels in stage 1 (LEVELS >= 1 always)
  localparam int L2 = LEVELS - L1 < 3 ? LEVELS - L1 : 3;  // levels in stage 2; stage 3 has the rest
  localparam int N1 = P >> L1, N2 = N1 >> L2;  // keys left after stages 1 and 2
  localparam logic [CW-1:0] NONE = CW'(DW + 1);

  function automatic logic [CW-1:0] popcount(input logic [DW-1:0] d);
    popcount = '0;
    for (int v = 0; v < DW; v++) popcount = popcount + CW'(d[v]);
  endfunction

  // one tree level over the first 2n keys of k: key i takes the smaller count of keys 2i and 2i+1. Only the counts
  // are compared: every index of the left subtree is below every index of the right one, so a tie keeps the left
  // key, the lower index.
  logic [P*KW-1:0] k1, k2, k3;
  logic [N1*KW-1:0] s1_q;
  logic [N2*KW-1:0] s2_q;

  always_comb begin
    for (int v = 0; v < P; v++) begin
      k1[v*KW+:KW] = {NONE, VW'(v)};  // v < P = 2^VW: the index bits fold to constants
      if (v < NV && active[v % NV] && popcount(doms[(v%NV)*DW+:DW]) > 1)
        k1[v*KW+:KW] = {popcount(doms[(v%NV)*DW+:DW]), VW'(v)};
    end
    for (int level = 1; level <= L1; level++)
      for (int i = 0; i < P / 2; i++)
        if (i < (P >> level))
          k1[i*KW+:KW] = k1[(2*i+1)*KW+VW+:CW] < k1[2*i*KW+VW+:CW] ? k1[(2*i+1)*KW+:KW] : k1[2*i*KW+:KW];
  end

  always_ff @(posedge clk) s1_q <= k1[0+:N1*KW];

  always_comb begin
    candidates_q = 1'b0;
    for (int i = 0; i < N1; i++) candidates_q = candidates_q | s1_q[i*KW+VW+:CW] != NONE;
    k2 = '0;
    k2[0+:N1*KW] = s1_q;
    for (int level = 1; level <= L2; level++)
      for (int i = 0; i < P / 2; i++)
        if (i < (N1 >> level))
          k2[i*KW+:KW] = k2[(2*i+1)*KW+VW+:CW] < k2[2*i*KW+VW+:CW] ? k2[(2*i+1)*KW+:KW] : k2[2*i*KW+:KW];
  end

  always_ff @(posedge clk) s2_q <= k2[0+:N2*KW];

  always_comb begin
    k3 = '0;
    k3[0+:N2*KW] = s2_q;
    for (int level = 1; level <= LEVELS - L1 - L2; level++)
      for (int i = 0; i < P / 2; i++)
        if (i < (N2 >> level))
          k3[i*KW+:KW] = k3[(2*i+1)*KW+VW+:CW] < k3[2*i*KW+VW+:CW] ? k3[(2*i+1)*KW+:KW] : k3[2*i*KW+:KW];
    var_index_early = k3[0+:VW];
  end

  always_ff @(posedge clk) begin
    var_index <= var_index_early;
    found <= k3[VW+:CW] != NONE;
  end
endmodule
