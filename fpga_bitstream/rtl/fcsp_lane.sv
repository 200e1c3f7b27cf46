// One propagator lane: evaluates the constraint record it is given (one per cycle), of any kind the engine is
// built with (KINDS: bit 0 ALLDIFF, 1 NEQ, 2 TABLE2, 3 LINEAR; a kind left out builds no unit, and the host-side
// compiler refuses programs that use it). NEQ and TABLE2 use scope positions 0 (x) and 1 (y).
//
// Two pipeline stages, as fcsp_alldiff's: `outs` and `conflict` are those of the record given in the previous
// cycle. ALLDIFF splits its logic between the stages and reads that record's domains again from `doms_late`; the
// other kinds compute in the first stage and their outputs are registered.
module fcsp_lane #(
    parameter int MS    = 9,
    parameter int DW    = 9,
    parameter int KINDS = 15
) (
    input  logic                    clk,
    input  logic        [      2:0] kind,      // ISA kind, 0: no constraint this cycle
    input  logic                    flag,      // ALLDIFF exact / LINEAR op EQ
    input  logic        [   MS-1:0] used,      // the first m scope positions
    input  logic        [   DW-1:0] full,      // (1 << D) - 1
    input  logic        [MS*DW-1:0] doms,      // the scope's domains, position i at [i*DW +: DW]
    /* verilator lint_off UNUSEDSIGNAL */  // the fields of kinds the engine is built without
    input  logic signed [     31:0] k,         // NEQ
    input  logic signed [     63:0] rhs,       // LINEAR
    input  logic        [MS*32-1:0] coeffs,    // LINEAR
    input  logic        [DW*DW-1:0] rows,      // TABLE2
    /* verilator lint_on UNUSEDSIGNAL */
    input  logic        [MS*DW-1:0] doms_late,  // the domains `doms` held in the previous cycle
    output logic        [MS*DW-1:0] outs,
    output logic                    conflict
);
  localparam logic [2:0] ALLDIFF = 3'd1, NEQ = 3'd2, TABLE2 = 3'd3, LINEAR = 3'd4;

  logic [MS*DW-1:0] alldiff_outs;
  logic alldiff_conflict;
  /* verilator lint_off UNUSEDSIGNAL */  // a lane of ALLDIFF alone reads none of these
  logic [MS*DW-1:0] linear_outs;
  logic [DW-1:0] neq_x, neq_y, table_x, table_y;
  /* verilator lint_on UNUSEDSIGNAL */

  generate
    if ((KINDS & 1) != 0) begin : g_alldiff
      fcsp_alldiff #(.MS(MS), .DW(DW)) u_alldiff (
          .clk(clk), .doms(doms), .used(used), .exact(flag), .full(full), .doms_late(doms_late), .outs(alldiff_outs),
          .conflict(alldiff_conflict)
      );
    end else begin : g_no_alldiff
      assign alldiff_outs = doms_late;
      assign alldiff_conflict = 1'b0;
    end
    if ((KINDS & 2) != 0) begin : g_neq
      fcsp_neq #(.DW(DW)) u_neq (.dx(doms[0+:DW]), .dy(doms[DW+:DW]), .k(k), .ox(neq_x), .oy(neq_y));
    end else begin : g_no_neq
      assign neq_x = doms[0+:DW];
      assign neq_y = doms[DW+:DW];
    end
    if ((KINDS & 4) != 0) begin : g_table2
      fcsp_table2 #(.DW(DW)) u_table2 (.dx(doms[0+:DW]), .dy(doms[DW+:DW]), .rows(rows), .ox(table_x), .oy(table_y));
    end else begin : g_no_table2
      assign table_x = doms[0+:DW];
      assign table_y = doms[DW+:DW];
    end
    if ((KINDS & 8) != 0) begin : g_linear
      fcsp_linear #(.MS(MS), .DW(DW)) u_linear (
          .doms(doms), .used(used), .op_eq(flag), .rhs(rhs), .coeffs(coeffs), .outs(linear_outs)
      );
    end else begin : g_no_linear
      assign linear_outs = doms;
    end
  endgenerate

  // Built with one kind (the 9x9 engine: ALLDIFF only), the lane does not select: its outputs are that unit's
  // whatever `kind` says, since the engine reads only lanes that hold a constraint and the host-side compiler
  // refuses the kinds not built; only `conflict` is gated by the kind. The 2:1 select on every output bit would be
  // MS*DW LUTs per lane.
  localparam bit SOLE = (KINDS & (KINDS - 1)) == 0;
  localparam logic [2:0] SOLE_KIND =
      (KINDS & 1) != 0 ? ALLDIFF : (KINDS & 2) != 0 ? NEQ : (KINDS & 4) != 0 ? TABLE2 : LINEAR;

  logic [2:0] kind_q;
  always_ff @(posedge clk) kind_q <= kind;
  // stage 1: the kinds other than ALLDIFF, whole, and their outputs registered
  logic [MS*DW-1:0] other_q;
  if (KINDS != 1) begin : g_other
    logic [MS*DW-1:0] other;
    always_comb begin
      other = doms;
      case (SOLE ? SOLE_KIND : kind)
        NEQ: other[2*DW-1:0] = {neq_y, neq_x};
        TABLE2: other[2*DW-1:0] = {table_y, table_x};
        LINEAR: other = linear_outs;
        default: ;
      endcase
    end
    always_ff @(posedge clk) other_q <= other;
  end else begin : g_no_other  // a lane of ALLDIFF alone keeps no copy of its domains
    assign other_q = doms_late;
  end

  // stage 2
  always_comb begin
    outs = other_q;
    conflict = 1'b0;
    if (SOLE ? SOLE_KIND == ALLDIFF : kind_q == ALLDIFF) outs = alldiff_outs;
    if ((KINDS & 1) != 0) conflict = kind_q == ALLDIFF && alldiff_conflict;
  end

endmodule
