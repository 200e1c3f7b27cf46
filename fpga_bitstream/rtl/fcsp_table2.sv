// TABLE2 propagator of ISA v1: (x, y) allowed iff bit y of rows[x]; arc consistency, x keeps the values with a
// support in y and y the values with a support in x. Row a is rows[a*DW +: DW].
module fcsp_table2 #(
    parameter int DW = 9
) (
    input  logic [   DW-1:0] dx,
    input  logic [   DW-1:0] dy,
    input  logic [DW*DW-1:0] rows,
    output logic [   DW-1:0] ox,
    output logic [   DW-1:0] oy
);
  logic [DW-1:0] support_x, support_y;
  always_comb begin
    support_y = '0;
    for (int a = 0; a < DW; a++) begin
      support_x[a] = |(rows[a*DW+:DW] & dy);
      if (dx[a]) support_y = support_y | rows[a*DW+:DW];
    end
    ox = dx & support_x;
    oy = dy & support_y;
  end
endmodule
