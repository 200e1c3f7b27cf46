// LINEAR propagator of ISA v1: sum(a_i * x_i) <= rhs (op LE) or == rhs (op EQ), bounds consistency. With min_j /
// max_j the smallest / largest value of a_j * x_j, variable i keeps the values v with
// a_i * v <= rhs - sum_{j != i} min_j and, for EQ, a_i * v >= rhs - sum_{j != i} max_j. The reference model
// (engine/reference.py linear) states the same bounds as a floor / ceiling division; comparing a_i * v for every
// v is the same set (a_i * v is monotone in v) and needs no divider. Holes inside the bounds stay.
module fcsp_linear #(
    parameter int MS = 9,
    parameter int DW = 9
) (
    input  logic        [MS*DW-1:0] doms,
    input  logic        [   MS-1:0] used,
    input  logic                    op_eq,
    input  logic signed [     63:0] rhs,
    input  logic        [MS*32-1:0] coeffs,
    output logic        [MS*DW-1:0] outs
);
  // |rhs| <= 2^62, |a| < 2^31, v < 64, at most MS terms: 72 bits hold every sum and difference below.
  localparam int WL = 72;

  function automatic logic signed [WL-1:0] lowest(input logic [DW-1:0] d);
    lowest = '0;
    for (int v = DW - 1; v >= 0; v--) if (d[v]) lowest = WL'(v);
  endfunction
  function automatic logic signed [WL-1:0] highest(input logic [DW-1:0] d);
    highest = '0;
    for (int v = 0; v < DW; v++) if (d[v]) highest = WL'(v);
  endfunction

  logic signed [WL-1:0] a, smin, smax, upper, lower, prod;
  logic [MS*WL-1:0] cmin, cmax;  // per position, two's complement
  logic [DW-1:0] d, keep;

  always_comb begin
    smin = '0;
    smax = '0;
    for (int i = 0; i < MS; i++) begin
      a = WL'($signed(coeffs[i*32+:32]));
      d = doms[i*DW+:DW];
      cmin[i*WL+:WL] = a > 0 ? a * lowest(d) : a * highest(d);
      cmax[i*WL+:WL] = a > 0 ? a * highest(d) : a * lowest(d);
      if (used[i]) begin
        smin = smin + $signed(cmin[i*WL+:WL]);
        smax = smax + $signed(cmax[i*WL+:WL]);
      end
    end
    for (int i = 0; i < MS; i++) begin
      a = WL'($signed(coeffs[i*32+:32]));
      d = doms[i*DW+:DW];
      upper = WL'(rhs) - (smin - $signed(cmin[i*WL+:WL]));
      lower = WL'(rhs) - (smax - $signed(cmax[i*WL+:WL]));
      for (int v = 0; v < DW; v++) begin
        prod = a * WL'(v);
        keep[v] = prod <= upper && (!op_eq || prod >= lower);
      end
      outs[i*DW+:DW] = d & keep;
    end
  end
endmodule
