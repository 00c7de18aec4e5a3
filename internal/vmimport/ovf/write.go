package ovf

import (
	"bytes"
	"encoding/xml"
	"fmt"

	"github.com/govisor/govisor/internal/vmimport"
)

// StreamOptimizedFormat is the DiskSection format URI of a streamOptimized
// VMDK, the disk format VMware and VirtualBox expect in an OVA.
const StreamOptimizedFormat = "http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"

// FileDisk is one disk file of a package being written.
type FileDisk struct {
	Href     string // file name in the package
	Size     int64  // the file's size in bytes
	Capacity int64  // the disk's virtual size in bytes
}

func esc(s string) string {
	var b bytes.Buffer
	xml.EscapeText(&b, []byte(s))
	return b.String()
}

// Marshal writes an OVF 1.0 envelope (DSP0243 1.1.0, the version VMware
// and VirtualBox both import) for vm with the given disk files, in
// vm.Disks order: CPUs, memory, one SCSI controller (lsilogic: every
// importer has a driver for it) holding the disks, E1000 NICs with their
// MACs, the firmware as VMware's vmw:Config "firmware" key and the
// SMBIOS UUID as its "uuid" key.
func Marshal(vm *vmimport.VM, disks []FileDisk) []byte {
	var b bytes.Buffer
	p := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	p(`<?xml version="1.0" encoding="UTF-8"?>
<Envelope vmw:buildId="govisor" xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:cim="http://schemas.dmtf.org/wbem/wscim/1/common" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1" xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData" xmlns:vmw="http://www.vmware.com/schema/ovf" xmlns:vssd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <References>
`)
	for i, d := range disks {
		p("    <File ovf:href=\"%s\" ovf:id=\"file%d\" ovf:size=\"%d\"/>\n", esc(d.Href), i+1, d.Size)
	}
	p("  </References>\n  <DiskSection>\n    <Info>Virtual disk information</Info>\n")
	for i, d := range disks {
		p("    <Disk ovf:capacity=\"%d\" ovf:capacityAllocationUnits=\"byte\" ovf:diskId=\"vmdisk%d\" ovf:fileRef=\"file%d\" ovf:format=\"%s\"/>\n",
			d.Capacity, i+1, i+1, StreamOptimizedFormat)
	}
	p("  </DiskSection>\n  <NetworkSection>\n    <Info>The list of logical networks</Info>\n")
	nets := map[string]bool{}
	for _, n := range vm.NICs {
		if net := netName(n); !nets[net] {
			nets[net] = true
			p("    <Network ovf:name=\"%s\">\n      <Description>The %s network</Description>\n    </Network>\n", esc(net), esc(net))
		}
	}
	p(`  </NetworkSection>
  <VirtualSystem ovf:id="%s">
    <Info>A virtual machine</Info>
    <Name>%s</Name>
    <OperatingSystemSection ovf:id="101" vmw:osType="otherLinux64Guest">
      <Info>The kind of installed guest operating system</Info>
    </OperatingSystemSection>
    <VirtualHardwareSection>
      <Info>Virtual hardware requirements</Info>
      <System>
        <vssd:ElementName>Virtual Hardware Family</vssd:ElementName>
        <vssd:InstanceID>0</vssd:InstanceID>
        <vssd:VirtualSystemIdentifier>%s</vssd:VirtualSystemIdentifier>
        <vssd:VirtualSystemType>vmx-10</vssd:VirtualSystemType>
      </System>
`, esc(vm.Name), esc(vm.Name), esc(vm.Name))
	id := 1
	itemf := func(body string, a ...any) {
		p("      <Item>\n"+body+"      </Item>\n", a...)
	}
	itemf("        <rasd:AllocationUnits>hertz * 10^6</rasd:AllocationUnits>\n        <rasd:ElementName>%d virtual CPU(s)</rasd:ElementName>\n        <rasd:InstanceID>%d</rasd:InstanceID>\n        <rasd:ResourceType>3</rasd:ResourceType>\n        <rasd:VirtualQuantity>%d</rasd:VirtualQuantity>\n", vm.CPUs, id, vm.CPUs)
	id++
	itemf("        <rasd:AllocationUnits>byte * 2^20</rasd:AllocationUnits>\n        <rasd:ElementName>%dMB of memory</rasd:ElementName>\n        <rasd:InstanceID>%d</rasd:InstanceID>\n        <rasd:ResourceType>4</rasd:ResourceType>\n        <rasd:VirtualQuantity>%d</rasd:VirtualQuantity>\n", vm.MemoryMiB, id, vm.MemoryMiB)
	id++
	ctrl := id
	itemf("        <rasd:Address>0</rasd:Address>\n        <rasd:ElementName>SCSI Controller 0</rasd:ElementName>\n        <rasd:InstanceID>%d</rasd:InstanceID>\n        <rasd:ResourceSubType>lsilogic</rasd:ResourceSubType>\n        <rasd:ResourceType>6</rasd:ResourceType>\n", ctrl)
	id++
	for i := range disks {
		itemf("        <rasd:AddressOnParent>%d</rasd:AddressOnParent>\n        <rasd:ElementName>Hard Disk %d</rasd:ElementName>\n        <rasd:HostResource>ovf:/disk/vmdisk%d</rasd:HostResource>\n        <rasd:InstanceID>%d</rasd:InstanceID>\n        <rasd:Parent>%d</rasd:Parent>\n        <rasd:ResourceType>17</rasd:ResourceType>\n",
			i, i+1, i+1, id, ctrl)
		id++
	}
	for i, n := range vm.NICs {
		addr := ""
		if n.MAC != "" {
			addr = "        <rasd:Address>" + esc(n.MAC) + "</rasd:Address>\n"
		}
		itemf("%s        <rasd:AddressOnParent>%d</rasd:AddressOnParent>\n        <rasd:AutomaticAllocation>true</rasd:AutomaticAllocation>\n        <rasd:Connection>%s</rasd:Connection>\n        <rasd:ElementName>Network adapter %d</rasd:ElementName>\n        <rasd:InstanceID>%d</rasd:InstanceID>\n        <rasd:ResourceSubType>E1000</rasd:ResourceSubType>\n        <rasd:ResourceType>10</rasd:ResourceType>\n",
			addr, 7+i, esc(netName(n)), i+1, id)
		id++
	}
	fw := "bios"
	if vm.Firmware == vmimport.FirmwareUEFI {
		fw = "efi"
	}
	p("      <vmw:Config ovf:required=\"false\" vmw:key=\"firmware\" vmw:value=\"%s\"/>\n", fw)
	if u, ok := vmimport.ParseUUID(vm.UUID); ok {
		// The BIOS UUID, as vSphere writes it when it keeps UUIDs
		// (see systemUUID). On the vmx-10 hardware declared above
		// VMware's firmware reports SMBIOS 2.4 and stores these bytes
		// in order, so a Linux guest reads vm.UUID as govisor gave it
		// (a Windows guest reads it with the first three fields
		// swapped, as on any VMware hardware before 13); Parse reads
		// it back the same.
		p("      <vmw:Config ovf:required=\"false\" vmw:key=\"uuid\" vmw:value=\"%s\"/>\n", vmimport.FormatUUID(u))
	}
	p("    </VirtualHardwareSection>\n  </VirtualSystem>\n</Envelope>\n")
	return b.Bytes()
}

func netName(n vmimport.NIC) string {
	if n.Network != "" {
		return n.Network
	}
	return "VM Network"
}
