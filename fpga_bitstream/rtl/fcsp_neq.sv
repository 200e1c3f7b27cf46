// NEQ propagator of ISA v1: x != y + k. y fixed at b: x loses b + k; x fixed at a: y loses a - k. A value outside
// the domain removes nothing (bits at or above D are zero in every domain, so only the word's range is checked).
module fcsp_neq #(
    parameter int DW = 9
) (
    input  logic        [DW-1:0] dx,
    input  logic        [DW-1:0] dy,
    input  logic signed [  31:0] k,
    output logic        [DW-1:0] ox,
    output logic        [DW-1:0] oy
);
  function automatic logic single(input logic [DW-1:0] d);
    single = d != '0 && (d & (d - 1'b1)) == '0;  // no `return`: Yosys's frontend does not take it
  endfunction
  function automatic logic signed [33:0] index(input logic [DW-1:0] d);  // of the highest set bit
    index = '0;
    for (int v = 0; v < DW; v++) if (d[v]) index = 34'(v);
  endfunction

  logic signed [33:0] vx, vy;
  always_comb begin
    vx = index(dy) + 34'(k);
    vy = index(dx) - 34'(k);
    ox = dx;
    oy = dy;
    for (int v = 0; v < DW; v++) begin
      if (single(dy) && vx == 34'(v)) ox[v] = 1'b0;
      if (single(dx) && vy == 34'(v)) oy[v] = 1'b0;
    end
  end
endmodule
